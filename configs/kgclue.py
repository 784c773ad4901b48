"""Note 7 (kexue 8802): seq2seq + prefix tree, trie-constrained decoding for KBQA on KgCLUE.

A Transformer encoder-decoder trained from scratch (shared trainer, characters of the
BERT-chinese vocabulary) maps a question to `S [SEP] P [SEP] M [SEP]`; beam search in one
jitted loop, unconstrained or masked by a trie of every fact of the base (the facts of every
KgCLUE split file present + distractors), with and without the note's look-ahead rule; the
answer is the decoded fact's object O. EM / F1 on O on data.eval_split. Results:
docs/results/kgclue.md. Needs $LMSYS_DATA_DIR with kgclue/ and vocab/ (README: 'Real data').

  python -m experiments.run --config configs/kgclue.py --workdir runs/kgclue          # 3,000 steps: ~40 min on 2 shared CPU cores
  python -m experiments.run --config configs/kgclue.py:smp --workdir runs/kgclue_smp   # order S,M,P
  python -m experiments.run --config configs/kgclue.py:smoke --workdir /tmp/kgclue     # seconds
  python -m experiments.run --config configs/kgclue.py --config.data.eval_split=test_public
"""

import ml_collections

from lmsys import config as config_lib


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False, smp=False, steps=0)
  c = config_lib.experiment_config("kgclue")

  c.data = ml_collections.ConfigDict(dict(
      data_dir="",            # root holding kgclue/ and vocab/; "" = $LMSYS_DATA_DIR
      vocab_path="",          # "" = <root>/vocab/bert-base-chinese-vocab.txt
      train_split="train", eval_split="dev",   # <split>.json files of kgclue/
      eval_limit=0,           # evaluate the first N eval examples (0 = all)
      order="spm",            # target order: spm = S,P,M (the note's best); smp = S,M,P
      distractors=4, sense_distractors=1,       # distractor facts per entity (lmsys.data.kgclue)
      max_source_length=32,   # questions: p99 27 characters
      max_target_length=0))   # decoding steps; 0 = the longest target of the base (56 tokens with
                              # distractors): every fact can finish. Training batches are as wide
                              # as the longest training target (49).

  c.model = ml_collections.ConfigDict(dict(
      num_layers=2, num_heads=4, head_dim=32, ffn_ratio=4, activation="gelu", dropout_rate=0.1,
      attention="softmax", dtype="float32", remat=False))

  # Decoding runs: name -> (beam size, trie constraint, look-ahead, distractors in the base
  # [, renormalise]). renormalise: when the trie constrains a step, renormalise the probabilities
  # over the allowed tokens (the reference code's rule; False: the masked log-softmax, so each
  # forced token costs -log p); a run's fifth element overrides it. length_penalty: finished
  # hypotheses rank by score / length ** length_penalty (0: plain probability, the note's).
  c.decode = ml_collections.ConfigDict(dict(
      batch_size=16, renormalise=True, length_penalty=0.0,
      runs={"unconstrained_b5": (5, False, False, True),
            "constrained_b1": (1, True, False, True),
            "constrained_b1_no_renormalise": (1, True, False, True, False),
            "constrained_b3": (3, True, False, True),
            "constrained_b5": (5, True, False, True),
            "constrained_b5_no_renormalise": (5, True, False, True, False),
            "constrained_lookahead_b1": (1, True, True, True),
            "constrained_lookahead_b1_no_renormalise": (1, True, True, True, False),
            "constrained_lookahead_b5": (5, True, True, True),
            "constrained_lookahead_b5_no_renormalise": (5, True, True, True, False),
            "constrained_b5_no_distractors": (5, True, False, False),
            "constrained_lookahead_b5_no_distractors": (5, True, True, False)}))

  c.train = config_lib.train_defaults(num_steps=3000, batch_size=64, log_every=100, eval_every=2000,
                                      checkpoint_every=1000)
  c.optimizer = config_lib.optimizer_defaults(name="adamw", learning_rate=1e-3, schedule="cosine",
                                              warmup_steps=300, weight_decay=0.01, grad_clip_norm=1.0)
  if variants.smp:  # the order comparison: the default's main decoding runs only
    c.data.order = "smp"
    c.decode.runs = {k: v for k, v in c.decode.runs.items()
                     if k in ("unconstrained_b5", "constrained_b5", "constrained_lookahead_b5")}
  if variants.smoke:
    c.data.eval_limit = 8
    c.data.distractors, c.data.sense_distractors = 1, 1
    c.model.update(num_layers=1, num_heads=2, head_dim=8, dropout_rate=0.0)
    c.decode.batch_size = 4
    c.decode.runs = {"unconstrained_b2": (2, False, False, True), "constrained_b2": (2, True, False, True),
                     "constrained_lookahead_b2": (2, True, True, True)}
    c.train.update(num_steps=6, batch_size=8, log_every=3, eval_every=6, checkpoint_every=6)
    c.optimizer.warmup_steps = 2
  if variants.steps:
    c.train.num_steps = variants.steps
  return c
