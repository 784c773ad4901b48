"""Measured vs counted cost of a Transformer layer vs n (configs/attention_cost.py).

The timed layer is written here as plain functions of random weights (the same
maths as lmsys.models.transformer.EncoderLayer, whose compiled FLOPs XLA
counts for the check), so that the softmax core can run in groups of heads:
at n = 16,384 one head's n x n scores take 1 GiB, all 12 heads 12 GiB.

Two softmax cores are timed: the hand-written one (`implementation="reference"`,
which the attention sub-layer and the layer use, as in the first runs of note 2)
and the fused `jax.nn.dot_product_attention` that `attend` runs by default and
practitioners use (XLA's kernel on CPU, cuDNN flash attention on a GPU for
16-bit inputs). Each crossover that involves the core is reported for both:
`measured` (hand-written) and `measured_fused`. Times are `lmsys.timing.benchmark`
(compile excluded, best of the timed runs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import metrics, timing
from lmsys.nn import activations
from lmsys.notes import attention_cost
from lmsys.nn import attention as attention_lib
from lmsys.config import ConfigError
from lmsys.models import transformer


def validate(config) -> None:
  for key in ("num_heads", "head_dim", "ffn_ratio", "linear_head_dim_factor", "max_repeats"):
    if not isinstance(config[key], int) or config[key] <= 0:
      raise ConfigError(f"config key '{key}': expected a positive integer, got {config[key]!r}")
  if config.activation not in activations.ACTIVATIONS:
    raise ConfigError(f"config key 'activation': unknown activation {config.activation!r}")
  if not config.lengths or any(not isinstance(n, int) or n <= 0 for n in config.lengths):
    raise ConfigError(f"config key 'lengths': expected positive integers, got {config.lengths!r}")


def _weights(rng, width, ffn_ratio):
  keys = jax.random.split(rng, 6)
  init = lambda k, shape: jax.random.normal(k, shape) / math.sqrt(shape[0])
  return {"qkv": init(keys[0], (width, 3 * width)), "qkv_b": jnp.zeros(3 * width),
          "out": init(keys[1], (width, width)), "out_b": jnp.zeros(width),
          "wi": init(keys[2], (width, ffn_ratio * width)), "wi_b": jnp.zeros(ffn_ratio * width),
          "wo": init(keys[3], (ffn_ratio * width, width)), "wo_b": jnp.zeros(width)}


def _layer_norm(x):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)


def _softmax_core(q, k, v, heads_per_group, implementation="reference"):
  """Softmax attention over groups of heads (lax.map) to bound the n x n memory.

  implementation: "reference" (hand-written) or None (fused dot_product_attention).
  """
  b, n, h, d = q.shape
  attend = lambda q, k, v: attention_lib.attend(q, k, v, kind="softmax",
                                                implementation=implementation)
  if heads_per_group >= h:
    return attend(q, k, v)
  groups = h // heads_per_group
  split = lambda x: x.reshape(b, n, groups, heads_per_group, d).transpose(2, 0, 1, 3, 4)
  out = jax.lax.map(lambda args: attend(*args), (split(q), split(k), split(v)))
  return out.transpose(1, 2, 0, 3, 4).reshape(b, n, h, d)


def make_functions(config, n):
  h, d = config.num_heads, config.head_dim
  width = h * d
  act = activations.get(config.activation)
  heads_per_group = max(1, min(h, config.max_score_bytes // (4 * n * n)))
  while h % heads_per_group:
    heads_per_group -= 1

  def attention_sublayer(w, x):
    qkv = x @ w["qkv"] + w["qkv_b"]
    q, k, v = (t.reshape(x.shape[0], n, h, d) for t in jnp.split(qkv, 3, -1))
    out = _softmax_core(q, k, v, heads_per_group).reshape(x.shape[0], n, width)
    return out @ w["out"] + w["out_b"]

  def ffn(w, x):
    return act(x @ w["wi"] + w["wi_b"]) @ w["wo"] + w["wo_b"]

  def layer(w, x):
    x = x + attention_sublayer(w, _layer_norm(x))
    return x + ffn(w, _layer_norm(x))

  def softmax_core(q, k, v):
    return _softmax_core(q, k, v, heads_per_group)

  def softmax_fused_core(q, k, v):
    return _softmax_core(q, k, v, heads_per_group, implementation=None)

  def linear_core(q, k, v):
    return attention_lib.attend(q, k, v, kind="linear")

  return {"attention": attention_sublayer, "ffn": ffn, "layer": layer,
          "softmax_core": softmax_core, "softmax_fused_core": softmax_fused_core,
          "linear_core_4d": linear_core}, heads_per_group


def _time(fn, args, config):
  """(best seconds, timed runs) of the jitted fn, compile excluded (lmsys.timing)."""
  t = timing.benchmark(fn, *args, target_seconds=config.target_seconds,
                       max_repeats=config.max_repeats)
  return t.best_seconds, len(t.times)


def xla_check(config):
  """The counter vs XLA's cost analysis of the compiled flax EncoderLayer."""
  h, d = config.num_heads, config.head_dim
  rows = []
  for n in config.xla_check_lengths:
    for kind in ("softmax", "linear"):
      layer = transformer.EncoderLayer(transformer.TransformerConfig(
          num_heads=h, head_dim=d, attention=kind, ffn_ratio=config.ffn_ratio,
          activation=config.activation))
      x = jnp.zeros((1, n, h * d))
      params = jax.eval_shape(layer.init, jax.random.PRNGKey(0), x)
      xla = jax.jit(lambda p, x: layer.apply(p, x)).lower(params, x).compile().cost_analysis()["flops"]
      counted = attention_cost.layer_flops(n, h, d, config.ffn_ratio, kind, activation=config.activation)["total"]
      mults = attention_cost.layer_multiplications(n, h, d, config.ffn_ratio, kind)["total"]
      rows.append({"n": n, "kind": kind, "xla_flops": xla, "counted_flops": counted,
                   "ratio": counted / xla, "note_multiplications_x2": 2 * mults,
                   "note_ratio": 2 * mults / xla})
  return rows


def _crossover(lengths, a, b):
  """Smallest n (log-interpolated) where a(n) >= b(n), or None if never in range."""
  # A difference of two timings (the layer's rest) can be <= 0 under noise at tiny n: floor it.
  log = lambda x: np.log(np.maximum(np.asarray(x, float), 1e-12))
  diff = log(a) - log(b)
  for i in range(len(lengths)):
    if diff[i] >= 0:
      if i == 0:
        return float(lengths[0]) if diff[0] > 0 else float(lengths[0])
      t = -diff[i - 1] / (diff[i] - diff[i - 1])
      return float(np.exp(np.log(lengths[i - 1]) + t * (np.log(lengths[i]) - np.log(lengths[i - 1]))))
  return None


def run(config, workdir, writer) -> dict:
  h, d, r = config.num_heads, config.head_dim, config.ffn_ratio
  width = h * d
  checks = xla_check(config)
  for row in checks:
    writer.write(row["n"], f"xla_check/{row['kind']}", row)
  weights = _weights(jax.random.PRNGKey(config.seed), width, r)
  rows = []
  for n in config.lengths:
    fns, group = make_functions(config, n)
    keys = jax.random.split(jax.random.PRNGKey(n), 4)
    x = jax.random.normal(keys[0], (1, n, width))
    qkv = [jax.random.normal(k, (1, n, h, d)) for k in keys[1:]]
    qkv_4d = [jax.random.normal(k, (1, n, h, config.linear_head_dim_factor * d)) * 0.5 for k in keys[1:]]
    row = {"n": n, "softmax_heads_per_group": group}
    for name, fn in fns.items():
      args = (weights, x) if name in ("attention", "ffn", "layer") else (
          qkv_4d if name == "linear_core_4d" else qkv)
      row[f"{name}_seconds"], row[f"{name}_runs"] = _time(fn, args, config)
    mults = attention_cost.layer_multiplications(n, h, d, r)
    counted = attention_cost.layer_flops(n, h, d, r, activation=config.activation)
    row.update({"mult_attention": mults["attention"], "mult_attention_core": mults["attention_core"],
                "mult_ffn": mults["ffn"], "flops_layer": counted["total"],
                "layer_gflops_per_second": counted["total"] / row["layer_seconds"] / 1e9})
    rows.append(row)
    writer.write(n, "timing", row)
    print(f"n={n:6d} attention {row['attention_seconds'] * 1e3:9.1f} ms  core {row['softmax_core_seconds'] * 1e3:9.1f} ms"
          f"  fused core {row['softmax_fused_core_seconds'] * 1e3:9.1f} ms  ffn {row['ffn_seconds'] * 1e3:8.1f} ms  layer {row['layer_seconds'] * 1e3:9.1f} ms"
          f"  linear(4d) {row['linear_core_4d_seconds'] * 1e3:8.1f} ms", flush=True)

  lengths = [row["n"] for row in rows]
  col = lambda key: [row[key] for row in rows]
  # The layer without its core (projections, FFN, norms): the same whichever softmax kernel.
  rest = [row["layer_seconds"] - row["softmax_core_seconds"] for row in rows]
  n_arr = np.asarray(lengths, float)
  # Analytic crossovers from the FLOP counter (elementwise terms included) for comparison.
  flop_attn = [attention_cost.attention_flops(n, h, d) for n in lengths]
  flop_ffn = [attention_cost.ffn_flops(n, width, r, config.activation) for n in lengths]
  flop_core = [attention_cost.attention_core_flops(n, h, d) for n in lengths]
  flop_layer = [attention_cost.layer_flops(n, h, d, r, activation=config.activation)["total"] for n in lengths]
  flop_lin = [attention_cost.attention_core_flops(n, h, 4 * d, "linear") for n in lengths]
  predicted = attention_cost.note_crossovers(h, d)
  crossovers = {
      "attention_over_ffn": {
          "note": predicted["attention_over_ffn"],
          "flop_counter": _crossover(lengths, flop_attn, flop_ffn),
          "measured": _crossover(lengths, col("attention_seconds"), col("ffn_seconds"))},
      "quadratic_over_rest": {
          "note": predicted["quadratic_over_rest"],
          "flop_counter": _crossover(lengths, flop_core, [a - b for a, b in zip(flop_layer, flop_core)]),
          "measured": _crossover(lengths, col("softmax_core_seconds"), rest),
          "measured_fused": _crossover(lengths, col("softmax_fused_core_seconds"), rest)},
      "linear_pays": {
          "note": predicted["linear_pays"],
          "flop_counter": _crossover(lengths, flop_core, flop_lin),
          "measured": _crossover(lengths, col("softmax_core_seconds"), col("linear_core_4d_seconds")),
          "measured_fused": _crossover(lengths, col("softmax_fused_core_seconds"),
                                       col("linear_core_4d_seconds"))},
  }
  del n_arr
  _figure(rows, crossovers, workdir)
  return {"device": jax.devices()[0].device_kind, "shape": {"heads": h, "head_dim": d, "ffn_ratio": r},
          "xla_check": checks,
          "xla_check_max_deviation": max(abs(c["ratio"] - 1) for c in checks),
          "timings": rows, "crossovers": crossovers,
          "softmax_kernels": {"measured": "hand-written (attend implementation='reference')",
                              "measured_fused": "jax.nn.dot_product_attention (attend's default)"}}


def _figure(rows, crossovers, workdir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = [row["n"] for row in rows]
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for key, label in (("layer_seconds", "whole layer"), ("attention_seconds", "attention sub-layer"),
                     ("softmax_core_seconds", "softmax core (QK^T, AV), hand-written"),
                     ("softmax_fused_core_seconds", "softmax core, fused dot_product_attention"),
                     ("ffn_seconds", "FFN"),
                     ("linear_core_4d_seconds", "linear core, head size 4d")):
    ax.loglog(n, [row[key] for row in rows], "o-", label=label)
  for name, c in crossovers.items():
    ax.axvline(c["note"], ls=":", c="gray")
    ax.text(c["note"], ax.get_ylim()[1], name.replace("_", " "), rotation=90, va="top", fontsize=7)
  ax.set_xlabel("sequence length n")
  ax.set_ylabel("seconds (batch 1)")
  ax.legend(fontsize=8)
  ax.set_title("Transformer layer time vs n (dotted: the note's crossovers)")
  metrics.save_figure(fig, workdir, "attention_cost")


def summary(results) -> list[str]:
  """The note's crossovers against the measured ones, for both softmax kernels."""
  fmt = lambda n: "never in range" if n is None else f"~{n:,.0f}"
  lines = [f"device: {results['device']}; FLOP counter vs XLA: max deviation "
           f"{100 * results['xla_check_max_deviation']:.2f}%"]
  for name, c in results["crossovers"].items():
    line = (f"{name}: note n = {c['note']:,}, FLOP counter {fmt(c['flop_counter'])}, "
            f"measured {fmt(c['measured'])} (hand-written softmax)")
    if "measured_fused" in c:
      line += f", {fmt(c['measured_fused'])} (fused dot_product_attention)"
    lines.append(line)
  return lines
