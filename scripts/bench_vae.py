"""Speed of note 6's estimator: k=5,000 log p(x) throughput and memory flat in k.

  python scripts/bench_vae.py [--layers 1] [--input 784] [--images 100]

Prints (1) the compiled temp memory (XLA memory_analysis) of one estimator call
for k = 50, 500, 5000 at a fixed chunk, which should stay flat, next to the
memory of computing all k log weights at once; (2) images per second of the
k=5,000 estimate; (3) training steps per second for k = 1, 5, 50 at batch 100.
Timings are wall-clock on whatever machine runs it (compilation excluded).
"""

import argparse

import jax
import numpy as np

from lmsys import iwae, timing
from lmsys.models import vae


def temp_mib(fn, *args):
  temp = timing.compiled_memory(fn, *args)["temp_bytes"]
  return temp / 2 ** 20 if temp is not None else float("nan")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--layers", type=int, default=1)
  parser.add_argument("--input", type=int, default=784)
  parser.add_argument("--batch", type=int, default=25, help="images per estimator call")
  parser.add_argument("--chunk", type=int, default=500, help="samples per scan step (throughput)")
  parser.add_argument("--memory_chunk", type=int, default=50, help="fixed chunk for the memory table")
  parser.add_argument("--images", type=int, default=100, help="images timed for throughput")
  args = parser.parse_args()

  model = vae.make_model(args.layers, args.input)
  x = (np.random.default_rng(0).random((args.batch, args.input)) < 0.3).astype(np.float32)
  params = jax.jit(lambda: model.init(jax.random.key(0), x, jax.random.key(1)))()["params"]
  apply = lambda p, xb, r, s: model.apply({"params": p}, xb, r, s)
  rng = jax.random.key(2)
  print(f"{jax.devices()[0].device_kind}, {args.layers} stochastic layer(s), {args.input} pixels, "
        f"{args.batch} images per call, chunk {args.chunk}")

  print(f"\n## memory (compiled temp bytes of one call, chunk {args.memory_chunk})")
  print("| k | chunked scan (MiB) | all k at once (MiB) |\n|---|---|---|")
  for k in (50, 500, 5000):
    chunk = args.memory_chunk
    chunked = temp_mib(lambda p, xb, r: iwae.estimate_log_px(
        lambda rr, s: apply(p, xb, rr, s), r, k, chunk, (1,)), params, x, rng)
    direct = temp_mib(lambda p, xb, r: iwae.log_mean_exp(apply(p, xb, r, k)), params, x, rng)
    print(f"| {k} | {chunked:.1f} | {direct:.1f} |")

  print("\n## k=5,000 estimate throughput")
  estimator = iwae.make_estimator(apply, 5000, args.chunk, (1, 5, 50, 500))
  xs = np.tile(x, (args.images // args.batch + 1, 1))[:args.images]
  iwae.evaluate_dataset(estimator, params, x, rng, args.batch)  # compile
  with timing.Stopwatch() as watch:
    iwae.evaluate_dataset(estimator, params, xs, rng, args.batch)
  seconds = watch.seconds
  print(f"{args.images} images in {seconds:.1f} s: {args.images / seconds:.2f} images/s "
        f"({args.images * 5000 / seconds:,.0f} samples/s)")

  print("\n## training steps per second (batch 100)")
  xb = (np.random.default_rng(1).random((100, args.input)) < 0.3).astype(np.float32)
  for k in (1, 5, 50):
    step = jax.grad(lambda p, r: iwae.iwae_loss(apply(p, xb, r, k)))
    measured = timing.benchmark(step, params, rng, target_seconds=3.0, max_repeats=10_000)
    print(f"k={k}: {1 / measured.median_seconds:.1f} steps/s (median of {len(measured.times)} steps)")


if __name__ == "__main__":
  main()
