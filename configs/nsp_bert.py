"""Note 5 (kexue 8671; arXiv 2109.03564): NSP-BERT zero-shot accuracy on the FewCLUE dev sets.

Every task through BERT's next-sentence head (lmsys/notes/nsp_bert.py: the prompts, the pair order, the
candidates- and samples-contrast mappings): eprstmt, tnews, iflytek, csldcp, chid by
candidates contrast, bustm, ocnli, csl, cluewsc by samples contrast with thresholds fixed on
data.threshold_split (dev). Against the majority-class and random baselines, with the paper's
BERT-base numbers beside ours. Results: docs/results/nsp_bert.md.

model.checkpoint is either
  - a Hugging Face BERT directory (config.json, vocab.txt, model.safetensors or pytorch_model.bin),
    e.g. a local copy of bert-base-chinese: the paper's setting, no code change;
  - an lmsys bert_pretrain workdir (configs/nsp_bert_pretrain.py; its latest checkpoint);
  - "" : a randomly initialised BERT of model.random.* (a chance-level floor; the smoke test).
Needs $LMSYS_DATA_DIR with fewclue/ (and vocab/ for checkpoint=""); README: 'Real data'.

  python -m experiments.run --config configs/nsp_bert_pretrain.py --workdir runs/nsp_bert_pretrain     # first: ~60 min
  python -m experiments.run --config configs/nsp_bert.py --workdir runs/nsp_bert                # runs/nsp_bert_pretrain
  python -m experiments.run --config configs/nsp_bert.py --config.model.checkpoint=/path/to/bert-base-chinese
  python -m experiments.run --config configs/nsp_bert.py --config.data.eval_split=test_public
  python -m experiments.run --config configs/nsp_bert.py:smoke --workdir /tmp/nsp_smoke         # seconds
"""

import ml_collections

from lmsys import config as config_lib

# Cheapest first (pairs scored: chid 7 a example, tnews 15, csldcp 67, iflytek 119), so the log
# of a long CPU run shows the quick tasks' numbers early.
TASKS = ("eprstmt", "bustm", "ocnli", "csl", "cluewsc", "chid", "tnews", "csldcp", "iflytek")


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.experiment_config("nsp_bert")

  c.data = ml_collections.ConfigDict(dict(
      data_dir="",                      # root holding fewclue/ (and vocab/); "" = $LMSYS_DATA_DIR
      vocab_path="",                    # checkpoint="" only; "" = <root>/vocab/bert-base-chinese-vocab.txt
      tasks=TASKS,
      eval_split="dev_few_all",         # any <split>.json of the task folders, e.g. test_public
      threshold_split="dev_few_all",    # samples contrast: where the rank-cut thresholds are fixed
      eval_limit=0))                    # first N examples of every split read (0 = all)

  c.model = ml_collections.ConfigDict(dict(
      checkpoint="runs/nsp_bert_pretrain",  # HF BERT directory | bert_pretrain workdir | "" (random)
      max_length=0,                     # tokens per pair; 0 = the released scripts' (256, chid and
                                        # cluewsc 128); 128 = the paper's; capped at the model's positions
      lowercase=True,                   # the tokenizer's (True for bert-base-chinese and uncased models)
      dtype="float32",                  # compute dtype (bfloat16 on accelerators)
      random=ml_collections.ConfigDict(dict(   # checkpoint="" only
          hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
          max_position_embeddings=128, seed=0))))

  # The first choice of each is the released code's (lmsys.notes.nsp_bert.PROTOCOL_CHOICES).
  c.protocol = ml_collections.ConfigDict(dict(
      tnews_labels="released",          # released: 证券 / 民生 as the classification code; file: label_zh (股票 / 故事)
      cluewsc_order="span_first",       # span_first: span1 + text 上文中…是指 (is_pre); text_first: swapped
      chid="soft_positions",            # soft_positions: idiom first at the blank's position ids; text_first
      thresholds="released"))           # released: a group's top dev score, >= moves up; midpoint

  c.eval = ml_collections.ConfigDict(dict(batch_pairs=256))  # pairs per jitted call
  if variants.smoke:
    c.model.checkpoint = ""
    c.model.max_length = 64
    c.data.eval_limit = 12
    c.eval.batch_pairs = 32
  return c
