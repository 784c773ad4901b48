"""lmsys.notes.attention_cost: crossovers and the timed layer's pieces (the counter itself is
checked against XLA in tests/nn/test_attention.py)."""

import jax
import numpy as np
import pytest

from lmsys.nn import attention
from lmsys.notes import attention_cost


def test_crossover_is_log_interpolated():
  # log(a/b) = log(1/4), log(2/4), log(8/4): zero halfway (in log n) between 200 and 400,
  # at 200 * sqrt(2) = 282.84.
  assert attention_cost.crossover([100, 200, 400], [1, 2, 8], [4, 4, 4]) == pytest.approx(282.8427, rel=1e-6)
  assert attention_cost.crossover([100, 200, 400], [5, 5, 5], [4, 4, 4]) == 100.0   # ahead from the start
  assert attention_cost.crossover([100, 200, 400], [1, 2, 3], [4, 4, 4]) is None    # never in range
  # A non-positive difference of timings (noise at tiny n) is floored at 1e-12, not a crash:
  # log(1e-12 / 4) = -29.0173, log(8 / 4) = 0.6931, so t = 29.0173 / 29.7105 = 0.976670, n = 100 * 2^t = 196.79.
  assert attention_cost.crossover([100, 200], [-1.0, 8], [4, 4]) == pytest.approx(196.7918, rel=1e-5)


def test_grouped_softmax_core_equals_all_heads_at_once():
  q, k, v = (jax.random.normal(jax.random.key(i), (1, 16, 4, 8)) for i in range(3))
  whole = attention.attend(q, k, v, kind="softmax", implementation="reference")
  for group in (1, 2, 4):
    np.testing.assert_allclose(attention_cost.grouped_softmax_core(q, k, v, group), whole, atol=1e-6)


def test_heads_are_grouped_to_bound_the_score_memory():
  # n = 64: one head's float32 scores take 4 * 64 * 64 = 16 KiB; 40 KiB allow 2 heads (a divisor of 4).
  _, group = attention_cost.layer_functions(64, 4, 8, "gelu", max_score_bytes=40 * 1024)
  assert group == 2
  _, group = attention_cost.layer_functions(64, 4, 8, "gelu", max_score_bytes=2 ** 30)
  assert group == 4


def test_the_note_crossovers_of_bert_base():
  crossovers = attention_cost.crossovers(
      [{"n": n, "attention_seconds": 1.0, "ffn_seconds": 2.0, "softmax_core_seconds": 0.1,
        "softmax_fused_core_seconds": 0.1, "layer_seconds": 3.0, "linear_core_4d_seconds": 1.0}
       for n in (128, 256)], 12, 64, 4, "gelu")
  assert {k: v["note"] for k, v in crossovers.items()} == {
      "attention_over_ffn": 1536, "quadratic_over_rest": 4608, "linear_pays": 1024}
  assert crossovers["attention_over_ffn"]["measured"] is None  # attention never passes the FFN here
