"""Time, FLOP rate and memory of every attention kernel vs sequence length (notes 2, 3).

  python scripts/bench_attention.py                      # CPU: n in 512..32768
  python scripts/bench_attention.py --lengths 2048,8192 --kernels linear_elu,favor_256 \
      --json /tmp/bench.json

BERT-base heads (h=12, d=64), batch 1, float32 unless --dtype. Every timing is
`lmsys.timing.benchmark` (compile apart, best of the timed runs reported beside
the median); memory is XLA's compiled temp buffer (`timing.compiled_memory`),
the kernel's working set beyond its inputs and outputs; FLOPs are XLA's cost
analysis of the compiled kernel, so GFLOP/s is what XLA counts divided by time.
A kernel is skipped (and says so) when that memory exceeds --max_temp_gb or the
previous length already took over --max_seconds.

Rows besides the kernels, all in the same process so that their ratios mean
something on a shared machine:
- `matmul`: a plain [n, h*d] x [h*d, h*d] product, the machine's dense FLOP
  rate at this n; each kernel's GFLOP/s is reported as a fraction of it.
- backward: the VJP alone (residuals from a jitted forward), for the kernels in
  --backward; reported as backward / forward.
`softmax` is `attend(kind="softmax")`, the fused `jax.nn.dot_product_attention`;
`softmax_reference` the hand-written one. On a GPU the baselines also include
cuDNN's flash attention (`implementation="cudnn"`, bf16) against linear
attention in bf16 (not exercised on CPU).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from lmsys import timing
from lmsys.nn import attention as A


def kernels(on_gpu: bool, chunk: int | None):
  """name -> (builder: causal -> fn(q, k, v), dtype or None for the run's dtype)."""
  rng = jax.random.key(0)
  chunk_kw = {} if chunk is None else {"chunk_size": chunk}
  attend = lambda kind, **kw: (lambda c: lambda q, k, v: A.attend(q, k, v, kind=kind, causal=c, **kw))
  specs = {
      "softmax": (attend("softmax"), None),
      "softmax_reference": (attend("softmax", implementation="reference"), None),
      "linear_elu": (attend("linear", **chunk_kw), None),
      "favor_256": (attend("favor", rng=rng, num_features=256, **chunk_kw), None),
      "taylor_2": (attend("taylor", order=2, **chunk_kw), None),
  }
  if on_gpu:
    specs["softmax_cudnn_bf16"] = (lambda c: lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, is_causal=c, implementation="cudnn"), jnp.bfloat16)
    specs["linear_elu_bf16"] = (attend("linear", **chunk_kw), jnp.bfloat16)
  return specs


def _xla_flops(fn, *args):
  try:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except
    return None


def _apply_vjp(vjp, cotangent):
  return vjp(cotangent)


def measure(fn, args, target_seconds, max_repeats, backward):
  """Forward (and backward) timings, XLA FLOPs and temp memory of fn(*args)."""
  row = {}
  t = timing.benchmark(fn, *args, target_seconds=target_seconds, max_repeats=max_repeats)
  row.update(seconds=t.best_seconds, median_seconds=t.median_seconds,
             compile_seconds=t.compile_seconds, runs=len(t.times))
  row["flops"] = _xla_flops(fn, *args)
  if row["flops"]:
    row["gflops_per_second"] = row["flops"] / t.best_seconds / 1e9
  if backward:
    out, vjp = jax.vjp(jax.jit(fn), *args)
    cotangent = jnp.ones_like(out)
    b = timing.benchmark(_apply_vjp, vjp, cotangent, target_seconds=target_seconds,
                         max_repeats=max_repeats)
    row.update(backward_seconds=b.best_seconds, backward_median_seconds=b.median_seconds,
               backward_temp_bytes=timing.compiled_memory(_apply_vjp, vjp, cotangent)["temp_bytes"])
  return row


def _fmt_bytes(b):
  return f"{b / 2**20:9.1f} MiB" if b is not None else "      n/a"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--lengths", default="512,2048,8192,32768")
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--kernels", default="", help="comma-separated subset (default: all)")
  parser.add_argument("--backward", default="linear_elu,favor_256,softmax",
                      help="kernels whose backward pass is timed too")
  parser.add_argument("--max_temp_gb", type=float, default=4.0)
  parser.add_argument("--max_seconds", type=float, default=20.0)
  parser.add_argument("--taylor_max_length", type=int, default=8192)
  parser.add_argument("--softmax_max_length", type=int, default=32768,
                      help="skip the quadratic kernels above this n (they take ~25 s at 8192 on 2 CPU cores)")
  parser.add_argument("--chunk_size", type=int, default=None,
                      help="causal chunk of the linear kinds (default: attention's per-backend default)")
  parser.add_argument("--target_seconds", type=float, default=1.0, help="timed seconds per row")
  parser.add_argument("--max_repeats", type=int, default=10)
  parser.add_argument("--keep_freed_memory", action="store_true",
                      help="glibc malloc keeps freed blocks (lmsys.timing.keep_freed_memory): no page "
                           "faults on each call's fresh large buffers")
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  kept = timing.keep_freed_memory() if args.keep_freed_memory else False

  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  specs = kernels(on_gpu, args.chunk_size)
  if args.kernels:
    specs = {k: v for k, v in specs.items() if k in args.kernels.split(",")}
  backward = set(args.backward.split(",")) - {""}
  lengths = [int(n) for n in args.lengths.split(",")]
  base_dtype = jnp.dtype(args.dtype)
  default_chunk = getattr(A, "default_chunk_size", lambda: None)()
  chunk = args.chunk_size or default_chunk
  print(f"device: {device.device_kind} ({device.platform}); jax {jax.__version__}; "
        f"h={args.heads} d={args.head_dim} batch 1; causal chunk {chunk}; "
        f"malloc keeps freed memory: {kept}", flush=True)

  rows, slow = [], set()
  width = args.heads * args.head_dim
  for n in lengths:
    key = jax.random.key(n)
    base = [jax.random.normal(k, (1, n, args.heads, args.head_dim)) for k in jax.random.split(key, 3)]
    # The machine's dense rate at this n: one [n, h*d] x [h*d, h*d] product.
    a, b = base[0].reshape(n, width).astype(base_dtype), jnp.eye(width, dtype=base_dtype) * 0.5
    row = {"kernel": "matmul", "n": n, "causal": False, "dtype": base_dtype.name}
    row.update(measure(jnp.matmul, (a, b), args.target_seconds, args.max_repeats, False))
    rows.append(row)
    print(f"{'matmul':20s} n={n:6d}              {row['seconds'] * 1e3:10.2f} ms"
          f"  {row.get('gflops_per_second', float('nan')):7.1f} GFLOP/s", flush=True)
    for name, (builder, dtype) in specs.items():
      dtype = dtype or base_dtype
      qkv = [x.astype(dtype) for x in base]
      for causal in (False, True):
        row = {"kernel": name, "n": n, "causal": causal, "dtype": jnp.dtype(dtype).name}
        fn = builder(causal)
        if name.startswith("taylor") and n > args.taylor_max_length:
          row["skipped"] = f"feature dim {A.feature_dim('taylor', args.head_dim, order=2)}: n > {args.taylor_max_length}"
        elif name.startswith("softmax") and n > args.softmax_max_length:
          row["skipped"] = f"quadratic: n > {args.softmax_max_length}"
        elif (name, causal) in slow:
          row["skipped"] = f"previous length took > {args.max_seconds:.0f} s"
        else:
          try:
            temp = timing.compiled_memory(fn, *qkv)["temp_bytes"]
          except Exception as e:  # pylint: disable=broad-except
            temp, row["note"] = None, f"memory_analysis unavailable: {type(e).__name__}"
          row["temp_bytes"] = temp
          if temp is not None and temp > args.max_temp_gb * 2**30:
            row["skipped"] = f"needs {temp / 2**30:.1f} GiB temp > {args.max_temp_gb} GiB"
          else:
            try:
              with timing.Stopwatch() as watch:
                row.update(measure(fn, qkv, args.target_seconds, args.max_repeats, name in backward))
              row["wall"] = watch.seconds
              if row["seconds"] > args.max_seconds / 4:
                slow.add((name, causal))
            except Exception as e:  # pylint: disable=broad-except
              row["skipped"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
        if "seconds" in row:
          bwd = (f"  backward {row['backward_seconds'] * 1e3:9.2f} ms" if "backward_seconds" in row else "")
          print(f"{name:20s} n={n:6d} causal={causal!s:5s} {row['seconds'] * 1e3:10.2f} ms"
                f"  {row.get('gflops_per_second', float('nan')):7.1f} GFLOP/s  temp {_fmt_bytes(row['temp_bytes'])}{bwd}",
                flush=True)
        else:
          print(f"{name:20s} n={n:6d} causal={causal!s:5s} skipped: {row['skipped']}", flush=True)

  ratios = compute_ratios(rows, lengths)
  print("\nratios (same run):")
  for k, v in ratios.items():
    print(f"  {k}: {v:.2f}")
  result = {"chunk_size": chunk, "device": device.device_kind, "platform": device.platform,
            "jax": jax.__version__, "keep_freed_memory": kept, "heads": args.heads, "head_dim": args.head_dim,
            "rows": rows, "ratios": ratios}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


def compute_ratios(rows, lengths):
  """The targets as ratios of rows of one run."""
  def get(kernel, n, causal, field="seconds"):
    for r in rows:
      if r["kernel"] == kernel and r["n"] == n and r["causal"] == causal and r.get(field):
        return r[field]
    return None

  ratios = {}
  for n in lengths:
    for kernel in ("linear_elu", "favor_256", "softmax"):
      c, nc = get(kernel, n, True), get(kernel, n, False)
      if c and nc:
        ratios[f"{kernel} causal/non-causal n={n}"] = c / nc
    matmul = get("matmul", n, False, "gflops_per_second")
    for causal in (False, True):
      for kernel in ("linear_elu", "favor_256"):
        rate = get(kernel, n, causal, "gflops_per_second")
        if rate and matmul:
          ratios[f"{kernel} GFLOP/s / matmul's n={n} causal={causal}"] = rate / matmul
      for kernel in ("linear_elu", "favor_256", "softmax"):
        fwd, bwd = get(kernel, n, causal), get(kernel, n, causal, "backward_seconds")
        if fwd and bwd:
          ratios[f"{kernel} backward/forward n={n} causal={causal}"] = bwd / fwd
      s, lin = get("softmax", n, causal), get("linear_elu", n, causal)
      if s and lin:
        ratios[f"softmax/linear_elu n={n} causal={causal}"] = s / lin
      ref = get("softmax_reference", n, causal)
      if s and ref:
        ratios[f"softmax_reference/softmax(fused) n={n} causal={causal}"] = ref / s
      cudnn, lin16 = get("softmax_cudnn_bf16", n, causal), get("linear_elu_bf16", n, causal)
      if cudnn and lin16:
        ratios[f"softmax_cudnn_bf16/linear_elu_bf16 n={n} causal={causal}"] = cudnn / lin16
  return ratios


if __name__ == "__main__":
  main()
