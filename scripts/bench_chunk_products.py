"""The four batched products of chunk-parallel causal linear attention, against one plain matmul.

Causal linear attention (lmsys.nn.attention, chunk C) spends its time in batched
products of small matrices, one per (head, chunk): scores [C, F] x [F, C],
intra-chunk output [C, C] x [C, Dv+1], states [F, C] x [C, Dv+1], and the
read-out [C, F] x [F, Dv+1]. This times each of them for BERT-base heads
(h = 12, F = Dv = 64) at n tokens, as GFLOP/s beside a plain [n, h*d] x
[h*d, h*d] matmul in the same process: how far the batched small products are
from the machine's dense rate decides how close causal can get to non-causal.

  python scripts/bench_chunk_products.py [--n 8192] [--chunks 32,64,128,256] [--keep_freed_memory]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp

from lmsys import timing


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=8192)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--chunks", default="32,64,128,256")
  parser.add_argument("--keep_freed_memory", action="store_true")
  args = parser.parse_args()
  kept = timing.keep_freed_memory() if args.keep_freed_memory else False
  n, h, d = args.n, args.heads, args.head_dim
  rate = lambda flops, t: flops / t.best_seconds / 1e9
  matmul = timing.benchmark(jnp.matmul, jnp.ones((n, h * d)), jnp.ones((h * d, h * d)), target_seconds=0.5,
                            max_repeats=20)
  print(f"n={n} h={h} d={d}; malloc keeps freed memory: {kept}")
  print(f"plain matmul [n, h*d] x [h*d, h*d]: {rate(2 * n * (h * d) ** 2, matmul):6.1f} GFLOP/s")
  # Non-causal linear attention's read-out: one [n, F] x [F, Dv+1] product per head, no chunks.
  whole = timing.benchmark(jnp.matmul, jnp.ones((h, n, d)), jnp.ones((h, d, d + 1)), target_seconds=0.5,
                           max_repeats=20)
  print(f"heads-batched, unchunked [h, n, F] x [h, F, Dv+1] (non-causal read-out): "
        f"{rate(2 * h * n * d * (d + 1), whole):6.1f} GFLOP/s")
  print("C     scores [C,F]x[F,C]   intra [C,C]x[C,D]   states [F,C]x[C,D]   read-out [C,F]x[F,D]  (GFLOP/s)")
  for c in (int(x) for x in args.chunks.split(",")):
    g, dv = h * n // c, d + 1
    shapes = {"scores": ((g, c, d), (g, d, c)), "intra": ((g, c, c), (g, c, dv)),
              "states": ((g, d, c), (g, c, dv)), "read-out": ((g, c, d), (g, d, dv))}
    rates = []
    for a, b in shapes.values():
      t = timing.benchmark(jnp.matmul, jnp.ones(a), jnp.ones(b), target_seconds=0.5, max_repeats=20)
      rates.append(rate(2 * a[0] * a[1] * a[2] * b[2], t))
    print(f"{c:<5d} " + "   ".join(f"{r:17.1f}" for r in rates), flush=True)


if __name__ == "__main__":
  main()
