"""Note 2 (kexue 8610): where does a Transformer layer's time go as n grows?

An analytic multiplication / FLOP counter (lmsys.notes.attention_cost) for a BERT-base layer
(h=12, d=64, FFN 4x), checked against XLA's cost analysis of the compiled
flax EncoderLayer, and measured times (batch 1, float32) of the attention
sub-layer, its n^2 core (both the fused jax.nn.dot_product_attention that
`attend` runs and the hand-written reference), the FFN and the whole layer for
n from 128 to 16,384, plus linear attention with 4x the head size. Reports the
crossovers the note predicts (n > 2hd, n > 6hd, n > 16d) against the measured
ones, for both softmax kernels. Results: docs/results/attention_cost.md.

  python -m experiments.run --config configs/attention_cost.py --workdir runs/attention_cost   # ~5-10 min, 2 cores
  python -m experiments.run --config configs/attention_cost.py:smoke --workdir /tmp/acost      # seconds
"""

import ml_collections

from lmsys import config as config_lib


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.experiment_config("attention_cost")
  c.num_heads = 12
  c.head_dim = 64
  c.ffn_ratio = 4
  c.activation = "gelu"
  c.lengths = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
  c.xla_check_lengths = (128, 512, 2048)    # flax layer vs counter (compile only)
  c.linear_head_dim_factor = 4               # the note: linear attention needs ~4x the head size
  c.max_score_bytes = 2 ** 30                # softmax core evaluated in head groups under this
  c.target_seconds = 1.5                     # repeats per measurement ~ target / first run time
  c.max_repeats = 10
  # A measured crossover "agrees" with the note's when within this fraction of it (lmsys.claims).
  c.claims = ml_collections.ConfigDict(dict(crossover_margin=0.25))
  if variants.smoke:
    c.num_heads, c.head_dim = 2, 16
    c.lengths = (32, 64, 128)
    c.xla_check_lengths = (32,)
    c.target_seconds = 0.05
    c.max_repeats = 2
  return c
