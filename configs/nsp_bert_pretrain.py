"""Note 5 (NSP-BERT): pretrain a small BERT from scratch with MLM + NSP on the FewCLUE text.

The corpus is every FewCLUE task's unlabeled.json plus its training split without labels
(lmsys/tasks/bert_pretrain.py says how pairs, masks and batches are made); the vocabulary is
Google's Chinese BERT vocab.txt (21,128 pieces), so the checkpoint has BERT's layout and the
zero-shot config loads it (configs/nsp_bert.py, --config.model.checkpoint=WORKDIR). The workdir
also gets vocab.txt and bert_config.json (Hugging Face field names) next to the checkpoints.

Budget: about 60 minutes of wall time on a shared, busy 2-core CPU. Sized from a timing on
that machine (2026-11-25, load 10-13 from other jobs): hidden 256 / sequence 128 / batch 32 ran
0.17 steps/s (an hour = 600 steps), hidden 128 / sequence 64 / batch 32 ran 0.5 steps/s, so
the default is the latter: 4 layers, hidden 128, 2 heads, FFN 512, pairs of 64 tokens, batch
32, 2,000 steps (~1 epoch of the 62k documents). The zero-shot run then reads 64 tokens per
pair (the model's positions). A longer run needs only a larger train.num_steps: best in a new
workdir (resuming this one with more steps works, but the cosine schedule is recomputed for the
new length, so the learning rate jumps back up at the resumed step).
Needs $LMSYS_DATA_DIR with fewclue/ and vocab/ (README: 'Real data').

  python -m experiments.run --config configs/nsp_bert_pretrain.py --workdir runs/nsp_bert_pretrain    # ~60 min, 2 busy CPU cores
  python -m experiments.run --config configs/nsp_bert_pretrain.py:smoke --workdir /tmp/bert_smoke  # seconds
  python -m experiments.run --config configs/nsp_bert_pretrain.py:steps=20000 --workdir runs/nsp_bert_pretrain  # resume, longer
"""

import ml_collections

from lmsys import config as config_lib

TASKS = ("eprstmt", "tnews", "iflytek", "csldcp", "bustm", "ocnli", "csl", "cluewsc", "chid")


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False, steps=0)
  c = config_lib.experiment_config("nsp_bert_pretrain")

  c.data = ml_collections.ConfigDict(dict(
      data_dir="",              # root holding fewclue/ and vocab/; "" = $LMSYS_DATA_DIR
      vocab_path="",            # "" = <root>/vocab/bert-base-chinese-vocab.txt
      tasks=TASKS,              # unlabeled.json (where present) + train_split of each
      train_split="train_few_all",
      heldout_fraction=0.02,    # documents held out for the MLM / NSP accuracy
      max_documents=0))         # 0 = all

  c.model = ml_collections.ConfigDict(dict(   # Hugging Face BertConfig field names
      hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=512,
      max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
      dtype="float32", remat=False))

  c.pretrain = ml_collections.ConfigDict(dict(
      max_length=64,            # tokens per pair, [CLS] A [SEP] B [SEP] (mean pair: 57 tokens)
      max_predictions=10,       # masked positions per pair (15% of 64 = 9.6)
      mask_rate=0.15, next_rate=0.5,
      eval_pairs=1024, eval_batch_size=64))

  c.train = config_lib.train_defaults(num_steps=2000, batch_size=32, log_every=50, eval_every=500,
                                      checkpoint_every=250)
  c.optimizer = config_lib.optimizer_defaults(name="adamw", learning_rate=1e-3, schedule="cosine",
                                              warmup_steps=100, weight_decay=0.01, grad_clip_norm=1.0)
  if variants.smoke:
    c.model.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=64)
    c.pretrain.update(max_length=64, max_predictions=8, eval_pairs=16, eval_batch_size=8)
    c.train.update(num_steps=6, batch_size=8, log_every=3, eval_every=6, checkpoint_every=6)
    c.optimizer.warmup_steps = 2
  if variants.steps:
    c.train.num_steps = variants.steps
  return c
