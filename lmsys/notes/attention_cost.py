"""Multiplications and FLOPs of a Transformer layer (note 2: kexue 8610).

The note's count, in multiplications, for n tokens and h heads of size d:
self-attention `4 n h^2 d^2` (q, k, v and output projections) `+ 2 n^2 h d`
(q k^T and A v); FFN with expansion r: `2 r n h^2 d^2`. So with r = 4 the
attention sub-layer costs more than the FFN once n > 2hd, and the n^2 term
outweighs the rest of the layer once n > 6hd. Linear attention costs `2 n F d_v`
per head (F features, values of size d_v) against softmax's `2 n^2 d`; with a
head of 4d for queries, keys *and values* (F = d_v = 4d, what
configs/attention_cost.py measures) that is `32 n d^2`, so it wins once
n > 16d. The n > 16d crossover holds only with value size 4d: with F = 4d and
values of size d the count is `8 n d^2` and the crossover is n > 4d.

`*_multiplications` give the note's count (matrix products only).
`*_flops` follow XLA's cost-analysis conventions so that they can be checked
against `jax.jit(f).lower(...).compile().cost_analysis()["flops"]`: a product
of [m, k] by [k, n] is 2mkn; every elementwise add, multiply, max, select or
divide is 1 per element; exp, tanh, rsqrt are "transcendentals", not flops;
an activation costs what XLA's expansion of it costs (gelu's erf is a
polynomial of 64 flops per element on CPU). These smaller terms are estimates
(within a few percent of XLA for every kind tested in tests/nn/test_attention.py).

Causal linear attention is chunk-parallel (no loop): masked C x C products
inside each chunk of C positions, every chunk's state phi(K)^T [V, 1] at once,
an exclusive prefix over chunks and one batched product with phi(Q), so XLA's
count covers all of it and the counter is checked against it with many chunks.
"""

from __future__ import annotations

import math

# Flops per element of XLA's expansion of each activation (CPU, jax 0.10).
ACTIVATION_FLOPS = {"relu": 1, "gelu": 64, "gelu_tanh": 8, "softplus": 6, "squareplus": 4,
                    "silu": 4, "tanh": 0, "elu": 4}
FEATURE_MAP_FLOPS = {"elu": 5.5, "relu": 1}   # per element of phi(q), phi(k)
LAYERNORM_FLOPS = 7                          # per element: mean, variance, normalise, scale, shift


def note_crossovers(num_heads: int, head_dim: int) -> dict:
  """The note's predicted crossover lengths n."""
  return {"attention_over_ffn": 2 * num_heads * head_dim,
          "quadratic_over_rest": 6 * num_heads * head_dim,
          "linear_pays": 16 * head_dim}  # assumes linear attention with q, k and v all of size 4d


# ---------------------------------------------------------------- multiplications

def attention_multiplications(n, num_heads, head_dim, kind="softmax", feature_dim=None):
  """{'projections', 'core', 'total'} multiplications of self-attention over n tokens."""
  width = num_heads * head_dim
  projections = 4 * n * width * width
  if kind == "softmax":
    core = 2 * n * n * width
  else:  # phi(k)^T v and phi(q) (.): 2 n F d per head
    core = 2 * n * (feature_dim or head_dim) * width
  return {"projections": projections, "core": core, "total": projections + core}


def ffn_multiplications(n, width, ffn_ratio=4):
  return 2 * ffn_ratio * n * width * width


def layer_multiplications(n, num_heads, head_dim, ffn_ratio=4, kind="softmax", feature_dim=None):
  attention = attention_multiplications(n, num_heads, head_dim, kind, feature_dim)
  ffn = ffn_multiplications(n, num_heads * head_dim, ffn_ratio)
  return {"attention": attention["total"], "attention_core": attention["core"],
          "ffn": ffn, "total": attention["total"] + ffn}


# ---------------------------------------------------------------- FLOPs (XLA's conventions)

def attention_core_flops(n, num_heads, head_dim, kind="softmax", *, causal=False, feature_dim=None,
                         feature_map="elu", chunk_size=64, batch=1):
  """FLOPs of `lmsys.nn.attention.attend` on [batch, n, h, d] q, k, v (self-attention)."""
  d = head_dim
  per_head = 0.0  # per (token, head)
  if kind == "softmax":
    per_head = 4 * n * d + 5 * n            # q k^T, A v; scale, max, subtract, sum, divide
    extra = 0.0
    if causal:
      per_head += 2 * n                     # two selects per score
      extra = 2 * n / num_heads             # the tril mask itself
    return batch * n * num_heads * (per_head + extra)
  f = feature_dim or _default_feature_dim(kind, d)
  if kind == "linear":
    features = 2 * d * FEATURE_MAP_FLOPS[feature_map]
  elif kind == "favor":   # w.x for q and k, offsets, exp scaling; the projection draw is ignored
    features = 2 * 2 * d * f + 10 * f + 6 * d
  elif kind in ("taylor", "limit"):
    features = 2 * f                        # one multiply per built feature (outer products)
  else:
    raise ValueError(f"unknown attention kind {kind!r}")
  if not causal:
    # phi(k)^T [v, 1] and phi(q) times it (the normaliser rides as an extra value column), divide
    per_head = features + 4 * f * (d + 1) + d + 1
  else:
    c = min(chunk_size, n)
    chunks = math.ceil(n / c)
    intra = 2 * c * f + c + 2 * c * (d + 1)           # scores, causal mask, scores [v, 1]
    # every chunk's state, the prefix over chunks, phi(q) times the state before its chunk
    inter = 4 * f * (d + 1) + 2 * f * (d + 1) / c + (d + 1) if chunks > 1 else 0.0
    per_head = features + intra + inter + d + 1
  return batch * n * num_heads * per_head


def attention_flops(n, num_heads, head_dim, kind="softmax", *, causal=False, batch=1, **kw):
  """FLOPs of `MultiHeadAttention` (projections with biases + core)."""
  width = num_heads * head_dim
  projections = batch * (4 * 2 * n * width * width + 4 * n * width)
  return projections + attention_core_flops(n, num_heads, head_dim, kind, causal=causal,
                                            batch=batch, **kw)


def ffn_flops(n, width, ffn_ratio=4, activation="gelu", batch=1):
  hidden = ffn_ratio * width
  return batch * n * (4 * width * hidden + hidden + width + ACTIVATION_FLOPS.get(activation, 4) * hidden)


def layer_flops(n, num_heads, head_dim, ffn_ratio=4, kind="softmax", *, activation="gelu",
                causal=False, batch=1, **kw):
  """FLOPs of one pre-LN `EncoderLayer`: 2 LayerNorms, attention, FFN, 2 residual adds."""
  width = num_heads * head_dim
  attention = attention_flops(n, num_heads, head_dim, kind, causal=causal, batch=batch, **kw)
  ffn = ffn_flops(n, width, ffn_ratio, activation, batch)
  other = batch * n * width * (2 * LAYERNORM_FLOPS + 2)
  return {"attention": attention, "ffn": ffn, "other": other, "total": attention + ffn + other}


def _default_feature_dim(kind, head_dim):
  if kind in ("linear",):
    return head_dim
  raise ValueError(f"feature_dim is required for attention kind {kind!r}")
