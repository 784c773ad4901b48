"""lmsys.notes.attention_cost: the FLOP counter against XLA's own count, and the note's crossovers."""

import jax
import jax.numpy as jnp
import pytest

from lmsys.models import transformer as T
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
