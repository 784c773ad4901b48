"""Char-level causal LM with each attention kind at equal steps (notes 2, 3).

A tiny pre-LN decoder-only Transformer (lmsys.models.transformer.CausalLM) on
real Chinese text: FewCLUE unlabeled sentences + KgCLUE questions
(lmsys.data.char_corpus, read from data.data_dir or $LMSYS_DATA_DIR; 5% of documents
held out). For every attention kind and a short and a long context, it trains
the same model for the same number of steps with the shared trainer and
reports held-out bits per character and training tokens/s.

  python -m experiments.run --config configs/attention_approx_lm.py --workdir runs/attention_lm   # ~15 min on 2 idle cores; ~2 min on one H100
  python -m experiments.run --config configs/attention_approx_lm.py:smoke --workdir /tmp/alm      # seconds
"""

import ml_collections

from lmsys import config as config_lib


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False, steps=0)
  c = config_lib.experiment_config("attention_approx_lm")

  c.data = ml_collections.ConfigDict()
  c.data.data_dir = ""            # "" = $LMSYS_DATA_DIR
  c.data.min_count = 3            # rarer characters -> <unk>
  c.data.max_documents = 0        # 0 = all
  c.data.heldout_windows = 64     # held-out windows per evaluation (of each context length)

  c.model = ml_collections.ConfigDict()
  c.model.num_layers = 2
  c.model.num_heads = 4
  c.model.head_dim = 32
  c.model.ffn_ratio = 4
  c.model.activation = "gelu"
  c.model.dropout_rate = 0.0

  # kind name -> (attention kind, its params); names are what the table shows.
  c.kinds = ml_collections.ConfigDict({
      "softmax": {"kind": "softmax"},
      "linear_elu": {"kind": "linear", "feature_map": "elu"},
      "favor_128": {"kind": "favor", "num_features": 128},
      "taylor_2": {"kind": "taylor", "order": 2},
      "limit_2": {"kind": "limit", "order": 2},
  })
  c.contexts = (64, 256)
  c.tokens_per_batch = 1024       # batch size = tokens_per_batch // context: equal tokens per step

  c.train = config_lib.train_defaults(
      num_steps=200, batch_size=16, log_every=50, eval_every=200, checkpoint_every=200)
  c.optimizer = config_lib.optimizer_defaults(
      name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=30, grad_clip_norm=1.0)

  if variants.smoke:
    c.data.max_documents = 2000
    c.data.heldout_windows = 4
    c.model.num_layers, c.model.num_heads, c.model.head_dim = 1, 2, 8
    c.kinds = ml_collections.ConfigDict({"softmax": {"kind": "softmax"},
                                         "favor_16": {"kind": "favor", "num_features": 16}})
    c.contexts = (16, 32)
    c.tokens_per_batch = 128
    c.train.num_steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 6, 3, 6, 6
    c.optimizer.warmup_steps = 2
  if variants.steps:  # :steps=N overrides the training length of any variant
    c.train.num_steps = variants.steps
  return c
