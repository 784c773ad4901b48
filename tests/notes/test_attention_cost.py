import numpy as np

"""lmsys.notes.attention_cost: the FLOP counter against XLA's own count, and the note's crossovers."""

import jax
import jax.numpy as jnp
import pytest

from lmsys.models import transformer as T
from lmsys.nn import attention
from lmsys.nn import attention as A
from lmsys.notes import attention_cost
from tests.conftest import cpu_only


def _xla_flops(f, *args):
  return jax.jit(f).lower(*args).compile().cost_analysis()["flops"]


@pytest.mark.parametrize("kind,params,causal", [
    ("softmax", {}, False), ("softmax", {}, True), ("linear", {}, False),
    ("linear", {"feature_map": "relu"}, False), ("favor", {"num_features": 64}, False),
    ("linear", {"chunk_size": 64}, True),    # chunk-parallel, no loop: XLA counts every chunk
])
@cpu_only
def test_flop_counter_matches_xla_core(kind, params, causal):
  n, h, d = 256, 4, 32
  x = jnp.ones((1, n, h, d))
  measured = _xla_flops(lambda q, k, v: A.attend(q, k, v, kind=kind, causal=causal,
                                                   rng=jax.random.key(0), **params), x, x, x)
  predicted = attention_cost.attention_core_flops(
      n, h, d, kind, causal=causal, feature_dim=A.feature_dim(kind, d, **params),
      feature_map=params.get("feature_map", "elu"), chunk_size=params.get("chunk_size", 64))
  assert abs(predicted / measured - 1) < 0.05, (predicted, measured)


@pytest.mark.parametrize("n,activation,kind", [(128, "gelu", "softmax"), (512, "relu", "linear")])
@cpu_only
def test_flop_counter_matches_xla_layer(n, activation, kind):
  h, d = 4, 32
  layer = T.EncoderLayer(T.TransformerConfig(num_heads=h, head_dim=d, attention=kind,
                                             activation=activation))
  x = jnp.ones((1, n, h * d))
  params = jax.jit(layer.init)(jax.random.key(0), x)
  measured = _xla_flops(lambda p, x: layer.apply(p, x), params, x)
  predicted = attention_cost.layer_flops(n, h, d, 4, kind, activation=activation)["total"]
  assert abs(predicted / measured - 1) < 0.05, (predicted, measured)
  # The note's multiplications are half the matmul flops, which dominate here.
  mults = attention_cost.layer_multiplications(n, h, d, 4, kind)["total"]
  assert 0.9 < 2 * mults / measured < 1.0


def test_note_crossovers():
  c = attention_cost.note_crossovers(12, 64)
  assert c == {"attention_over_ffn": 1536, "quadratic_over_rest": 4608, "linear_pays": 1024}
  at = lambda n: attention_cost.layer_multiplications(n, 12, 64)
  assert at(1535)["attention"] < at(1535)["ffn"] < at(1537)["attention"] - (at(1537)["ffn"] - at(1535)["ffn"])
  rest = lambda n: at(n)["total"] - at(n)["attention_core"]
  assert at(4607)["attention_core"] < rest(4607) and at(4609)["attention_core"] > rest(4609)


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
