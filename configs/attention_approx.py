"""Note 3 (kexue 8601): softmax attention as infinite-dimensional linear attention.

Error of the kernel exp(q.k/sqrt d) and of the attention output vs feature
dimension for Performer FAVOR+ (iid and orthogonal random features), the
Taylor features of order P = 1..4 and the limit form (1 + q.k/P)^P, P = 1..4
(both evaluated implicitly through powers of q.k, which the tests show equal
their explicit features), on random q, k and on q, k of a small causal
char-LM trained here with softmax attention by the shared trainer; how often
odd orders make the kernel / the normaliser negative; and the numerical rank
of the attention matrices (softmax full rank, linear <= feature dimension).

  python -m experiments.run --config configs/attention_approx.py --workdir runs/attention_approx   # ~3 min, 2 cores
  python -m experiments.run --config configs/attention_approx.py:smoke --workdir /tmp/aapprox      # seconds
  python -m experiments.sweep --config configs/attention_approx.py --workdir runs/sweep_aapprox    # head_dim scan
"""

import ml_collections

from lmsys import config as config_lib
from lmsys.launch import sweep

VARIANTS = dict(smoke=False, steps=0)


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, **VARIANTS)
  c = config_lib.experiment_config("attention_approx")

  c.random = ml_collections.ConfigDict(dict(length=256, head_dim=16, heads=4))
  c.favor_dims = (16, 64, 256, 1024, 4096, 16384)
  c.favor_draws = 3
  c.orders = (1, 2, 3, 4)
  c.rank_rtol = 1e-5
  c.rank_favor_dim = 64

  # The trained model whose q, k are analysed (softmax attention, causal).
  c.data = ml_collections.ConfigDict(dict(data_dir="", min_count=3, max_documents=0, heldout_windows=4))
  c.model = ml_collections.ConfigDict(dict(num_layers=2, num_heads=4, head_dim=16, ffn_ratio=4,
                                           activation="gelu", dropout_rate=0.0))
  c.context = 128
  c.tokens_per_batch = 2048
  c.train = config_lib.train_defaults(
      num_steps=300, batch_size=16, log_every=50, eval_every=300, checkpoint_every=300)
  c.optimizer = config_lib.optimizer_defaults(
      name="adamw", learning_rate=3e-3, schedule="cosine", warmup_steps=30, grad_clip_norm=1.0)

  if variants.smoke:
    c.random.length, c.random.heads = 32, 2
    c.favor_dims = (16, 64)
    c.favor_draws = 1
    c.orders = (1, 2)
    c.data.max_documents = 1000
    c.data.heldout_windows = 2
    c.model.num_layers, c.model.num_heads = 1, 2
    c.context, c.tokens_per_batch = 32, 128
    c.train.num_steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 4, 2, 4, 4
    c.optimizer.warmup_steps = 1
  if variants.steps:  # :steps=N overrides the training length of any variant
    c.train.num_steps = variants.steps
  return c


def get_sweep(arg=None):
  """The head dimension d of the random q, k, which sets every deterministic map's feature
  dimension (linear: d; Taylor / limit of order P: lmsys.nn.attention.feature_dim), against
  the same FAVOR+ dimensions."""
  if config_lib.parse_arg(arg, **VARIANTS).smoke:
    return sweep.product({"random.head_dim": [8, 16]})
  return sweep.product({"random.head_dim": [8, 16, 32, 64]})
