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

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import metrics, timing
from lmsys.models import transformer
from lmsys.nn import activations, attention

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


# ---------------------------------------------------------------- the measured layer (configs/attention_cost.py)
#
# The timed layer is written here as plain functions of random weights (the same maths as
# lmsys.models.transformer.EncoderLayer, whose compiled FLOPs XLA counts for the check), so
# that the softmax core can run in groups of heads: at n = 16,384 one head's n x n scores
# take 1 GiB, all 12 heads 12 GiB. Two softmax cores are timed: the hand-written one
# (`implementation="reference"`, which the attention sub-layer and the layer use) and the
# fused `jax.nn.dot_product_attention` that `attend` runs by default (XLA's kernel on CPU,
# cuDNN flash attention on a GPU for 16-bit inputs).

def random_weights(rng, width: int, ffn_ratio: int) -> dict:
  """Weights of one layer (QKV, output, FFN in and out; biases 0), scaled by 1/sqrt(fan-in)."""
  keys = jax.random.split(rng, 6)
  init = lambda k, shape: jax.random.normal(k, shape) / math.sqrt(shape[0])
  return {"qkv": init(keys[0], (width, 3 * width)), "qkv_b": jnp.zeros(3 * width),
          "out": init(keys[1], (width, width)), "out_b": jnp.zeros(width),
          "wi": init(keys[2], (width, ffn_ratio * width)), "wi_b": jnp.zeros(ffn_ratio * width),
          "wo": init(keys[3], (ffn_ratio * width, width)), "wo_b": jnp.zeros(width)}


def _layer_norm(x):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)


def grouped_softmax_core(q, k, v, heads_per_group: int, implementation="reference"):
  """Softmax attention over groups of heads (lax.map) to bound the n x n memory.

  implementation: "reference" (hand-written) or None (fused dot_product_attention).
  """
  b, n, h, d = q.shape
  attend = lambda q, k, v: attention.attend(q, k, v, kind="softmax", implementation=implementation)
  if heads_per_group >= h:
    return attend(q, k, v)
  groups = h // heads_per_group
  split = lambda x: x.reshape(b, n, groups, heads_per_group, d).transpose(2, 0, 1, 3, 4)
  out = jax.lax.map(lambda args: attend(*args), (split(q), split(k), split(v)))
  return out.transpose(1, 2, 0, 3, 4).reshape(b, n, h, d)


def layer_functions(n: int, num_heads: int, head_dim: int, activation: str, max_score_bytes: int):
  """({name: fn}, heads per softmax group) of the parts timed at length n: the attention
  sub-layer, the FFN and the whole pre-LN layer (fn(weights, x)), the hand-written and the
  fused softmax cores and the linear core (fn(q, k, v))."""
  h, d = num_heads, head_dim
  width = h * d
  act = activations.get(activation)
  heads_per_group = max(1, min(h, max_score_bytes // (4 * n * n)))
  while h % heads_per_group:
    heads_per_group -= 1

  def attention_sublayer(w, x):
    qkv = x @ w["qkv"] + w["qkv_b"]
    q, k, v = (t.reshape(x.shape[0], n, h, d) for t in jnp.split(qkv, 3, -1))
    out = grouped_softmax_core(q, k, v, heads_per_group).reshape(x.shape[0], n, width)
    return out @ w["out"] + w["out_b"]

  def ffn(w, x):
    return act(x @ w["wi"] + w["wi_b"]) @ w["wo"] + w["wo_b"]

  def layer(w, x):
    x = x + attention_sublayer(w, _layer_norm(x))
    return x + ffn(w, _layer_norm(x))

  def softmax_core(q, k, v):
    return grouped_softmax_core(q, k, v, heads_per_group)

  def softmax_fused_core(q, k, v):
    return grouped_softmax_core(q, k, v, heads_per_group, implementation=None)

  def linear_core(q, k, v):
    return attention.attend(q, k, v, kind="linear")

  return {"attention": attention_sublayer, "ffn": ffn, "layer": layer,
          "softmax_core": softmax_core, "softmax_fused_core": softmax_fused_core,
          "linear_core_4d": linear_core}, heads_per_group


def time_layer(config, weights, n: int) -> dict:
  """One timing row at length n: seconds and timed runs of every part of `layer_functions`
  (compile excluded, best of the runs; lmsys.timing), the note's multiplications and the
  counted FLOPs of the layer."""
  h, d, r = config.num_heads, config.head_dim, config.ffn_ratio
  fns, group = layer_functions(n, h, d, config.activation, config.max_score_bytes)
  keys = jax.random.split(jax.random.key(n), 4)
  x = jax.random.normal(keys[0], (1, n, h * d))
  qkv = [jax.random.normal(k, (1, n, h, d)) for k in keys[1:]]
  qkv_4d = [jax.random.normal(k, (1, n, h, config.linear_head_dim_factor * d)) * 0.5 for k in keys[1:]]
  row = {"n": n, "softmax_heads_per_group": group}
  for name, fn in fns.items():
    args = (weights, x) if name in ("attention", "ffn", "layer") else (qkv_4d if name == "linear_core_4d" else qkv)
    t = timing.benchmark(fn, *args, target_seconds=config.target_seconds, max_repeats=config.max_repeats)
    row[f"{name}_seconds"], row[f"{name}_runs"] = t.best_seconds, len(t.times)
  mults = layer_multiplications(n, h, d, r)
  counted = layer_flops(n, h, d, r, activation=config.activation)
  row.update({"mult_attention": mults["attention"], "mult_attention_core": mults["attention_core"],
              "mult_ffn": mults["ffn"], "flops_layer": counted["total"],
              "layer_gflops_per_second": counted["total"] / row["layer_seconds"] / 1e9})
  return row


def xla_check(num_heads: int, head_dim: int, ffn_ratio: int, activation: str, lengths) -> list[dict]:
  """The counter vs XLA's cost analysis of the compiled flax EncoderLayer, softmax and linear."""
  h, d = num_heads, head_dim
  rows = []
  for n in lengths:
    for kind in ("softmax", "linear"):
      layer = transformer.EncoderLayer(transformer.TransformerConfig(
          num_heads=h, head_dim=d, attention=kind, ffn_ratio=ffn_ratio, activation=activation))
      x = jnp.zeros((1, n, h * d))
      params = jax.eval_shape(layer.init, jax.random.key(0), x)
      xla = jax.jit(lambda p, x: layer.apply(p, x)).lower(params, x).compile().cost_analysis()["flops"]
      counted = layer_flops(n, h, d, ffn_ratio, kind, activation=activation)["total"]
      mults = layer_multiplications(n, h, d, ffn_ratio, kind)["total"]
      rows.append({"n": n, "kind": kind, "xla_flops": xla, "counted_flops": counted,
                   "ratio": counted / xla, "note_multiplications_x2": 2 * mults,
                   "note_ratio": 2 * mults / xla})
  return rows


def crossover(lengths, a, b):
  """Smallest n (log-interpolated) where a(n) >= b(n), or None if never in range."""
  # A difference of two timings (the layer's rest) can be <= 0 under noise at tiny n: floor it.
  log = lambda x: np.log(np.maximum(np.asarray(x, float), 1e-12))
  diff = log(a) - log(b)
  for i in range(len(lengths)):
    if diff[i] >= 0:
      if i == 0:
        return float(lengths[0])
      t = -diff[i - 1] / (diff[i] - diff[i - 1])
      return float(np.exp(np.log(lengths[i - 1]) + t * (np.log(lengths[i]) - np.log(lengths[i - 1]))))
  return None


def crossovers(rows, num_heads: int, head_dim: int, ffn_ratio: int, activation: str) -> dict:
  """The note's three crossovers: the note's n, the FLOP counter's and the measured ones
  (hand-written softmax core; `measured_fused`: the fused kernel)."""
  h, d, r = num_heads, head_dim, ffn_ratio
  lengths = [row["n"] for row in rows]
  col = lambda key: [row[key] for row in rows]
  # The layer without its core (projections, FFN, norms): the same whichever softmax kernel.
  rest = [row["layer_seconds"] - row["softmax_core_seconds"] for row in rows]
  flop_attn = [attention_flops(n, h, d) for n in lengths]
  flop_ffn = [ffn_flops(n, h * d, r, activation) for n in lengths]
  flop_core = [attention_core_flops(n, h, d) for n in lengths]
  flop_layer = [layer_flops(n, h, d, r, activation=activation)["total"] for n in lengths]
  flop_lin = [attention_core_flops(n, h, 4 * d, "linear") for n in lengths]
  predicted = note_crossovers(h, d)
  return {
      "attention_over_ffn": {
          "note": predicted["attention_over_ffn"],
          "flop_counter": crossover(lengths, flop_attn, flop_ffn),
          "measured": crossover(lengths, col("attention_seconds"), col("ffn_seconds"))},
      "quadratic_over_rest": {
          "note": predicted["quadratic_over_rest"],
          "flop_counter": crossover(lengths, flop_core, [a - b for a, b in zip(flop_layer, flop_core)]),
          "measured": crossover(lengths, col("softmax_core_seconds"), rest),
          "measured_fused": crossover(lengths, col("softmax_fused_core_seconds"), rest)},
      "linear_pays": {
          "note": predicted["linear_pays"],
          "flop_counter": crossover(lengths, flop_core, flop_lin),
          "measured": crossover(lengths, col("softmax_core_seconds"), col("linear_core_4d_seconds")),
          "measured_fused": crossover(lengths, col("softmax_fused_core_seconds"), col("linear_core_4d_seconds"))},
  }


def timing_figure(rows, crossovers_):
  """Layer, sub-layer, core and FFN time vs n (log-log), the note's crossovers dotted."""
  plt = metrics.pyplot()
  n = [row["n"] for row in rows]
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for key, label in (("layer_seconds", "whole layer"), ("attention_seconds", "attention sub-layer"),
                     ("softmax_core_seconds", "softmax core (QK^T, AV), hand-written"),
                     ("softmax_fused_core_seconds", "softmax core, fused dot_product_attention"),
                     ("ffn_seconds", "FFN"),
                     ("linear_core_4d_seconds", "linear core, head size 4d")):
    ax.loglog(n, [row[key] for row in rows], "o-", label=label)
  for name, c in crossovers_.items():
    ax.axvline(c["note"], ls=":", c="gray")
    ax.text(c["note"], ax.get_ylim()[1], name.replace("_", " "), rotation=90, va="top", fontsize=7)
  ax.set_xlabel("sequence length n")
  ax.set_ylabel("seconds (batch 1)")
  ax.legend(fontsize=8)
  ax.set_title("Transformer layer time vs n (dotted: the note's crossovers)")
  return fig
