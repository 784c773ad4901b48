"""Note 2: measured vs counted cost of a Transformer layer vs n (configs/attention_cost.py).

The layer, its parts and the crossovers are `lmsys.notes.attention_cost`. Each crossover
that involves the softmax core is measured for the hand-written core (`measured`) and the
fused `jax.nn.dot_product_attention` (`measured_fused`). Timings have no interval (one run,
best of its repeats): a crossover claim holds when the measured n is within
`claims.crossover_margin` (relative) of the note's.
"""

from __future__ import annotations

import jax

from lmsys import checks, metrics
from lmsys import claims as C
from lmsys.nn import activations
from lmsys.notes import attention_cost

CHECKS = [*[(checks.positive_int, k) for k in ("num_heads", "head_dim", "ffn_ratio", "linear_head_dim_factor",
                                                "max_repeats")],
          (checks.one_of, "activation", activations.ACTIVATIONS, "activation"),
          (checks.positive_ints, "lengths"), (checks.fraction, "claims.crossover_margin")]
CROSSOVERS = {
    "attention_over_ffn": "Attention costs more than the FFN only when n > 2hd (1,536 for BERT-base)",
    "quadratic_over_rest": "The n^2 term outweighs the rest of the layer only when n > 6hd (4,608)",
    "linear_pays": "Linear attention with 4x the head size is cheaper than softmax only when n > 16d (1,024)"}


def validate(config) -> None:
  checks.apply(config, CHECKS)


def run(config, workdir, writer) -> dict:
  h, d, r = config.num_heads, config.head_dim, config.ffn_ratio
  checks_ = attention_cost.xla_check(h, d, r, config.activation, config.xla_check_lengths)
  for row in checks_:
    writer.write(row["n"], f"xla_check/{row['kind']}", row)
  weights = attention_cost.random_weights(jax.random.key(config.seed), h * d, r)
  rows = []
  for n in config.lengths:
    rows.append(attention_cost.time_layer(config, weights, n))
    writer.write(n, "timing", rows[-1])
    print(f"n={n:6d} " + "  ".join(f"{k[:-8]} {rows[-1][k] * 1e3:.1f} ms" for k in rows[-1] if k.endswith("_seconds")),
          flush=True)
  crossovers = attention_cost.crossovers(rows, h, d, r, config.activation)
  metrics.save_figure(attention_cost.timing_figure(rows, crossovers), workdir, "attention_cost")
  return {"device": jax.devices()[0].device_kind, "shape": {"heads": h, "head_dim": d, "ffn_ratio": r},
          "xla_check": checks_, "xla_check_max_deviation": max(abs(c["ratio"] - 1) for c in checks_),
          "timings": rows, "crossovers": crossovers,
          "softmax_kernels": {"measured": "hand-written (attend implementation='reference')",
                              "measured_fused": "jax.nn.dot_product_attention (attend's default)"}}


def claims(results, config) -> list[dict]:
  top = max(row["n"] for row in results["timings"])
  margin = config.claims.crossover_margin
  out = []
  for name, text in CROSSOVERS.items():
    c = results["crossovers"][name]
    for source in ("flop_counter", "measured", "measured_fused"):
      if source not in c:
        continue
      n, beyond = (c[source], None) if c[source] is not None else (top, [top, 1e9])  # no crossover up to `top`
      out.append(C.claim(name, "2", text, dataset=f"{results['device']}, {source}", metric="crossover length n",
                         value=n, interval=beyond, kind="close", target=c["note"], margin=margin * c["note"],
                         detail=f"note n = {c['note']:,}; {source} n = "
                         + (f"{n:,.0f}" if beyond is None else f"beyond {top:,} (none in range)")))
  at = next((row for row in results["timings"] if row["n"] == 512), None)
  if at is not None:
    share = at["softmax_core_seconds"] / at["layer_seconds"]
    out.append(C.claim("big_not_quadratic", "2", "At BERT's length (n = 512) a layer is slow because it is big, "
                       "not because of n^2", dataset=results["device"], metric="share of layer time in the n^2 core",
                       value=share, kind="lower", target=0.5,
                       detail=f"core {at['softmax_core_seconds'] * 1e3:.1f} ms of {at['layer_seconds'] * 1e3:.1f} ms"))
  out.append(C.claim("flops_match_xla", "lmsys", "The FLOP counter matches XLA's cost analysis of the compiled layer",
                     metric="largest |counted / XLA - 1|", value=results["xla_check_max_deviation"], kind="at_most",
                     target=0.05, detail=f"{len(results['xla_check'])} (n, kind) pairs"))
  return out
