"""Time and peak memory of every attention kernel vs sequence length (notes 2, 3).

  python scripts/bench_attention.py                      # CPU: n in 512..32768
  python scripts/bench_attention.py --lengths 512,2048 --json /tmp/bench.json

BERT-base heads (h=12, d=64), batch 1, float32 unless --dtype. Each kernel is
jitted, run once (compile + warm-up), then timed `repeats` times (fewer at
large n); the table reports the fastest run. Memory is XLA's compiled
temp-buffer size (memory_analysis), i.e. the kernel's working set beyond its
inputs and outputs. A kernel is skipped (and says so) when that estimate
exceeds --max_temp_gb or the previous length already took over --max_seconds.
On a GPU the softmax baselines also include XLA's fused
`jax.nn.dot_product_attention` (implementation 'xla', and 'cudnn' in bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from lmsys import attention as A  # pylint: disable=g-import-not-at-top


def kernels(on_gpu: bool, chunk: int):
  """name -> (fn(q, k, v) builder taking causal, dtype or None for the run's dtype)."""
  rng = jax.random.PRNGKey(0)
  specs = {
      "softmax": (lambda c: lambda q, k, v: A.attend(q, k, v, kind="softmax", causal=c), None),
      "linear_elu": (lambda c: lambda q, k, v: A.attend(q, k, v, kind="linear", causal=c,
                                                        chunk_size=chunk), None),
      "favor_256": (lambda c: lambda q, k, v: A.attend(q, k, v, kind="favor", causal=c, rng=rng,
                                                       num_features=256, chunk_size=chunk), None),
      "taylor_2": (lambda c: lambda q, k, v: A.attend(q, k, v, kind="taylor", causal=c, order=2,
                                                      chunk_size=chunk), None),
  }
  if hasattr(jax.nn, "dot_product_attention"):
    specs["softmax_xla_fused"] = (lambda c: lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, is_causal=c, implementation="xla"), None)
    if on_gpu:
      specs["softmax_cudnn_bf16"] = (lambda c: lambda q, k, v: jax.nn.dot_product_attention(
          q, k, v, is_causal=c, implementation="cudnn"), jnp.bfloat16)
      specs["linear_elu_bf16"] = (lambda c: lambda q, k, v: A.attend(q, k, v, kind="linear", causal=c,
                                                                     chunk_size=chunk), jnp.bfloat16)
  return specs


def time_kernel(fn, args, repeats):
  compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
  jax.block_until_ready(compiled(*args))           # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return min(times), temp


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--lengths", default="512,2048,8192,32768")
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--kernels", default="", help="comma-separated subset (default: all)")
  parser.add_argument("--max_temp_gb", type=float, default=4.0)
  parser.add_argument("--max_seconds", type=float, default=20.0)
  parser.add_argument("--taylor_max_length", type=int, default=8192)
  parser.add_argument("--chunk_size", type=int, default=64, help="causal chunk of the linear kinds")
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)

  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  specs = kernels(on_gpu, args.chunk_size)
  if args.kernels:
    specs = {k: v for k, v in specs.items() if k in args.kernels.split(",")}
  lengths = [int(n) for n in args.lengths.split(",")]
  base_dtype = jnp.dtype(args.dtype)
  print(f"device: {device.device_kind} ({device.platform}); jax {jax.__version__}; "
        f"h={args.heads} d={args.head_dim} batch 1; causal chunk {args.chunk_size}", flush=True)

  rows, slow = [], set()
  for n in lengths:
    key = jax.random.PRNGKey(n)
    base = [jax.random.normal(k, (1, n, args.heads, args.head_dim)) for k in jax.random.split(key, 3)]
    for name, (builder, dtype) in specs.items():
      dtype = dtype or base_dtype
      qkv = [x.astype(dtype) for x in base]
      for causal in (False, True):
        row = {"kernel": name, "n": n, "causal": causal, "dtype": jnp.dtype(dtype).name}
        fn = builder(causal)
        if name.startswith("taylor") and n > args.taylor_max_length:
          row["skipped"] = f"feature dim {A.feature_dim('taylor', args.head_dim, order=2)}: n > {args.taylor_max_length}"
        elif (name, causal) in slow:
          row["skipped"] = f"previous length took > {args.max_seconds:.0f} s"
        else:
          try:
            temp = jax.jit(fn).lower(*qkv).compile().memory_analysis().temp_size_in_bytes
          except Exception as e:  # pylint: disable=broad-except
            temp, row["note"] = None, f"memory_analysis unavailable: {type(e).__name__}"
          if temp is not None and temp > args.max_temp_gb * 2**30:
            row["skipped"] = f"needs {temp / 2**30:.1f} GiB temp > {args.max_temp_gb} GiB"
          else:
            try:
              start = time.perf_counter()
              first, _ = time_kernel(fn, qkv, 1)
              repeats = 1 if first > 2 else (3 if first > 0.2 else 10)
              seconds, temp = time_kernel(fn, qkv, repeats) if repeats > 1 else (first, temp)
              row.update(seconds=seconds, temp_bytes=temp, repeats=repeats,
                         wall=time.perf_counter() - start)
              if seconds > args.max_seconds / 4:
                slow.add((name, causal))
            except Exception as e:  # pylint: disable=broad-except
              row["skipped"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
        if "seconds" in row:
          print(f"{name:20s} n={n:6d} causal={causal!s:5s} {row['seconds'] * 1e3:10.2f} ms  "
                f"temp {row['temp_bytes'] / 2**20 if row['temp_bytes'] is not None else float('nan'):9.1f} MiB",
                flush=True)
        else:
          print(f"{name:20s} n={n:6d} causal={causal!s:5s} skipped: {row['skipped']}", flush=True)

  def seconds(kernel, n, causal):
    for r in rows:
      if r["kernel"] == kernel and r["n"] == n and r["causal"] == causal and "seconds" in r:
        return r["seconds"]
    return None

  ratios = {}
  for n in lengths:
    for causal in (False, True):
      s, lin = seconds("softmax", n, causal), seconds("linear_elu", n, causal)
      if s and lin:
        ratios[f"softmax/linear n={n} causal={causal}"] = s / lin
      fused = seconds("softmax_xla_fused", n, causal)
      if fused and lin:
        ratios[f"softmax_xla_fused/linear n={n} causal={causal}"] = fused / lin
      cudnn, lin16 = seconds("softmax_cudnn_bf16", n, causal), seconds("linear_elu_bf16", n, causal)
      if cudnn and lin16:
        ratios[f"softmax_cudnn_bf16/linear_bf16 n={n} causal={causal}"] = cudnn / lin16
    for kernel in ("linear_elu", "favor_256"):
      c, nc = seconds(kernel, n, True), seconds(kernel, n, False)
      if c and nc:
        ratios[f"{kernel} causal/non-causal n={n}"] = c / nc
  print("\nratios:")
  for k, v in ratios.items():
    print(f"  {k}: {v:.2f}")
  result = {"chunk_size": args.chunk_size, "device": device.device_kind, "platform": device.platform, "jax": jax.__version__,
            "heads": args.heads, "head_dim": args.head_dim, "rows": rows, "ratios": ratios}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
