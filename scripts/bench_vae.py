"""Speed of note 6's estimator against this machine's matmul rate; memory flat in k.

  python scripts/bench_vae.py [--layers 1] [--input 784] [--images 200] [--rounds 3]

Prints
  (1) the FLOPs of the k=5,000 estimate: the matmuls of one sample's pass (the decoder,
      and for 2 layers the per-sample encoder), times k, plus the first encoder once per
      image; elementwise work (sampling, tanh, softplus) is not counted;
  (2) the compiled temp memory (XLA memory_analysis) of one estimator call for
      k = 50, 500, 5000 at a fixed chunk, which should stay flat, next to the
      memory of computing all k log weights at once;
  (3) images per second of the k=5,000 estimate (`density.make_estimator` on the model's
      __call__, as experiments/vae.py runs it) and, as "before", on the model's
      straightforward `reference_log_weights` (the computation before issue 10); their
      achieved FLOP/s as a fraction of the plain float32 matmul rate, measured in the
      same run: the decoder's own matmul chain (5000x50)@(50x200)@(200x200)@(200x784)
      without bias or tanh, and a 2048^3 square matmul. Each is timed in every one of
      --rounds alternating rounds and the best round kept, so that load from other
      processes on a shared machine hits all of them alike. CPU seconds (all threads)
      per call are printed beside wall seconds: on a busy machine they are the steadier;
  (4) training steps per second for k = 1, 5, 50 at batch 100 (__call__'s gradient).
Timings are on whatever machine runs it (compilation excluded).
"""

import argparse
import time

import jax
import numpy as np

from lmsys import timing
from lmsys.models import vae
from lmsys.tasks import density

NUM_SAMPLES = 5000


def temp_mib(fn, *args):
  temp = timing.compiled_memory(fn, *args)["temp_bytes"]
  return temp / 2 ** 20 if temp is not None else float("nan")


def dense_flops(sizes):
  """Multiply-add FLOPs (2 per MAC) of a chain of dense layers through these widths."""
  return sum(2 * a * b for a, b in zip(sizes, sizes[1:]))


def flop_counts(model):
  """(per sample, per image once) matmul FLOPs of the model's log weights."""
  below = [model.input_size, *model.latent_sizes[:-1]]
  per_sample, per_image = 0, 0
  for i, (hidden, z, out) in enumerate(zip(model.hidden_sizes, model.latent_sizes, below)):
    # encoder i: z_{i-1} -> hidden -> (mean, log_var) of z_i; decoder i: z_i -> hidden reversed -> out
    enc = dense_flops([out, *hidden]) + 2 * 2 * hidden[-1] * z
    dec = dense_flops([z, *reversed(hidden)]) + (1 if i == 0 else 2) * 2 * hidden[0] * out
    per_sample += dec + (enc if i > 0 else 0)
    per_image += enc if i == 0 else 0
  return per_sample, per_image


def timed(fn, *args, repeats):
  """(best wall seconds, CPU seconds per call over all threads) of a compiled `fn(*args)`."""
  start = time.process_time()
  measured = timing.benchmark(fn, *args, repeats=repeats, jit=False)
  return measured.best_seconds, (time.process_time() - start) / (len(measured.times) + 1)


def timed_once(fn):
  """(wall seconds, CPU seconds) of one call of host code `fn` (already compiled)."""
  start = time.process_time()
  with timing.Stopwatch() as watch:
    fn()
  return watch.seconds, time.process_time() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--layers", type=int, default=1)
  parser.add_argument("--input", type=int, default=784)
  parser.add_argument("--batch", type=int, default=25, help="images per estimator call")
  parser.add_argument("--chunk", type=int, default=500, help="samples per scan step (throughput)")
  parser.add_argument("--block_rows", type=int, default=1024,
                      help="VAE.block_rows: samples x images per block inside a chunk (0: none)")
  parser.add_argument("--memory_chunk", type=int, default=50, help="fixed chunk for the memory table")
  parser.add_argument("--images", type=int, default=200, help="images timed for throughput")
  parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
  args = parser.parse_args()

  model = vae.make_model(args.layers, args.input, block_rows=args.block_rows or None)
  x = (np.random.default_rng(0).random((args.batch, args.input)) < 0.3).astype(np.float32)
  params = jax.jit(lambda: model.init(jax.random.key(0), x, jax.random.key(1)))()["params"]
  apply = lambda p, xb, r, s: model.apply({"params": p}, xb, r, s)
  reference = lambda p, xb, r, s: model.apply({"params": p}, xb, r, s,
                                              method=vae.VAE.reference_log_weights)
  rng = jax.random.key(2)
  per_block = vae.samples_per_block(args.chunk, args.batch, model.block_rows)
  print(f"{jax.devices()[0].device_kind} ({jax.device_count()} device, {jax.local_devices()[0].platform}), "
        f"{args.layers} stochastic layer(s), {args.input} pixels, {args.batch} images per call, "
        f"chunk {args.chunk}, blocks of {per_block} samples ({per_block * args.batch} rows)")

  per_sample, per_image_once = flop_counts(model)
  per_image = NUM_SAMPLES * per_sample + per_image_once
  print(f"\n## FLOPs (matmuls only) of the k={NUM_SAMPLES:,} estimate")
  print(f"per sample (decoder{' + per-sample encoder' if args.layers > 1 else ''}): "
        f"{per_sample:,}; first encoder, once per image: {per_image_once:,}")
  print(f"per image: {per_image / 1e9:.3f} GFLOP; {args.images} images: "
        f"{args.images * per_image / 1e12:.3f} TFLOP; 10,000 test images: {1e4 * per_image / 1e12:.1f} TFLOP")

  print(f"\n## memory (compiled temp bytes of one call, chunk {args.memory_chunk})")
  print("| k | chunked scan, __call__ (MiB) | chunked scan, reference (MiB) | all k at once, reference (MiB) |")
  print("|---|---|---|---|")
  for k in (50, 500, 5000):
    chunk = args.memory_chunk
    rows = [temp_mib(lambda p, xb, r, f=f: density.estimate_log_px(
        lambda rr, s: f(p, xb, rr, s), r, k, chunk, (1,)), params, x, rng) for f in (apply, reference)]
    direct = temp_mib(lambda p, xb, r: density.log_mean_exp(reference(p, xb, r, k)), params, x, rng)
    print(f"| {k} | {rows[0]:.1f} | {rows[1]:.1f} | {direct:.1f} |")

  print(f"\n## k={NUM_SAMPLES:,} estimate throughput against the matmul rate (best of {args.rounds} rounds)")
  keys = jax.random.split(jax.random.key(3), 4)
  dec = params["decoder_0"]
  z = jax.random.normal(keys[0], (5000, model.latent_sizes[0]))
  kernels = [dec[f"Dense_{i}"]["kernel"] for i in range(len(model.hidden_sizes[0]))]
  kernels.append(dec["logits"]["kernel"])
  chain_flops = dense_flops([z.shape[1], *[w.shape[1] for w in kernels]]) * z.shape[0]

  def chain(z, *ws):
    for w in ws:
      z = z @ w
    return z
  square = jax.random.normal(keys[1], (2048, 2048))
  chain_fn = jax.jit(chain).lower(z, *kernels).compile()
  square_fn = jax.jit(lambda a: a @ a).lower(square).compile()
  xs = np.tile(x, (args.images // args.batch + 1, 1))[:args.images]
  estimators = {"__call__ (after)": density.make_estimator(apply, NUM_SAMPLES, args.chunk, (1, 5, 50, 500)),
                "reference (before)": density.make_estimator(reference, NUM_SAMPLES, args.chunk, (1, 5, 50, 500))}
  for estimator in estimators.values():
    density.evaluate_dataset(estimator, params, x, rng, args.batch)  # compile
  best = {}

  def record(name, flops, measured):
    wall, cpu = measured
    old = best.get(name, (np.inf, np.inf, flops))
    best[name] = (min(old[0], wall), min(old[1], cpu), flops)

  for _ in range(args.rounds):
    record("matmul chain", chain_flops, timed(chain_fn, z, *kernels, repeats=10))
    record("square matmul", 2 * 2048 ** 3, timed(square_fn, square, repeats=5))
    for name, estimator in estimators.items():
      record(name, args.images * per_image, timed_once(
          lambda e=estimator: density.evaluate_dataset(e, params, xs, rng, args.batch)))
  rate = {name: (flops / wall, flops / cpu) for name, (wall, cpu, flops) in best.items()}
  ref_wall, ref_cpu = max(rate["matmul chain"][0], rate["square matmul"][0]), max(
      rate["matmul chain"][1], rate["square matmul"][1])
  print("| computation | best wall s | GFLOP/s | CPU s | GFLOP per CPU s | images/s | "
        "fraction of matmul rate (wall, CPU) |")
  print("|---|---|---|---|---|---|---|")
  for name, (wall, cpu, flops) in best.items():
    images = f"{args.images / wall:.1f}" if flops == args.images * per_image else ""
    fraction = f"{rate[name][0] / ref_wall:.2f}, {rate[name][1] / ref_cpu:.2f}"
    print(f"| {name} | {wall:.3f} | {rate[name][0] / 1e9:.1f} | {cpu:.3f} | {rate[name][1] / 1e9:.1f} | "
          f"{images} | {fraction} |")
  print(f"matmul rate = the faster of the chain and the square matmul: {ref_wall / 1e9:.1f} GFLOP/s "
        f"wall, {ref_cpu / 1e9:.1f} GFLOP per CPU second. At the best wall rate above, 10,000 "
        f"images take {1e4 / (args.images / best['__call__ (after)'][0]):.0f} s.")

  print("\n## training steps per second (batch 100)")
  xb = (np.random.default_rng(1).random((100, args.input)) < 0.3).astype(np.float32)
  for k in (1, 5, 50):
    for name, f in (("__call__", apply), ("reference", reference)):
      step = jax.grad(lambda p, r, f=f: density.iwae_loss(f(p, xb, r, k)))
      measured = timing.benchmark(step, params, rng, target_seconds=2.0, max_repeats=10_000)
      print(f"k={k} {name}: {1 / measured.median_seconds:.1f} steps/s "
            f"(median of {len(measured.times)} steps)")


if __name__ == "__main__":
  main()
