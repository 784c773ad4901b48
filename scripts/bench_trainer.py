"""Shared-trainer overhead: its steps/s against a bare hand-written jitted loop.

Same model (the configs/mlp.py MLP), same batches (`make_batch_fn`), same
optimizer; the bare loop has no sharding, no non-finite guard, no logging,
no progress bar and no checkpoints, and (unless --same_metrics) does not
compute the grad norm and accuracy that the trainer reports every step.
The trainer's steps/s excludes eval and checkpoint pauses (timed separately). Both are timed after their first
(compiling) step, alternating A/B rounds in one process so machine noise hits
both alike; the overhead is reported at the median of the per-round ratios,
with their spread (min..max), so one disturbed round cannot decide it.
Target: trainer overhead at most 2% at the median.

  python scripts/bench_trainer.py [--dataset fashion_mnist] [--steps 3000] [--rounds 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import jax
import jax.numpy as jnp
import optax

from lmsys import config as config_lib
from lmsys import data, metrics, timing, trainer
from lmsys.models.mlp import MLP
from lmsys.tasks import classification


def bare_loop(model, tx, batch_fn, steps, seed, dim, same_metrics=False):
  params = model.init(jax.random.split(jax.random.key(seed))[0], jnp.zeros((1, dim)))["params"]
  opt_state = tx.init(params)
  step_key = jax.random.split(jax.random.key(seed))[1]
  loss_fn = classification.make_loss_fn(model)

  @jax.jit
  def step_fn(params, opt_state, batch, step):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, jax.random.fold_in(step_key, step))
    updates, opt_state = tx.update(grads, opt_state, params)
    # The trainer returns loss, grad norm and the model's metrics every step;
    # `same_metrics` makes the bare loop do that work too.
    out = (loss, optax.tree.norm(grads), aux) if same_metrics else loss
    return optax.apply_updates(params, updates), opt_state, out

  params, opt_state, loss = step_fn(params, opt_state, batch_fn(0), 0)
  jax.block_until_ready(loss)
  with timing.Stopwatch() as watch:
    for step in range(1, steps):
      params, opt_state, loss = step_fn(params, opt_state, batch_fn(step), step)
    jax.block_until_ready(params)
  return (steps - 1) / watch.seconds


def trainer_loop(config, model, batch_fn, dim):
  with tempfile.TemporaryDirectory() as workdir, metrics.Writer(workdir, tensorboard=False) as writer:
    result = trainer.train(
        config, workdir, writer,
        init_fn=lambda rng: model.init(rng, jnp.zeros((1, dim)))["params"],
        loss_fn=classification.make_loss_fn(model), batch_fn=batch_fn)
  return result.steps_per_second


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--same_metrics", action="store_true",
                      help="bare loop also computes the per-step metrics the trainer reports")
  parser.add_argument("--json", default="", help="also write the numbers to this file")
  args = parser.parse_args()

  config = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "mlp.py"))
  config.data.name = args.dataset
  config.model.hidden = (256, 256)
  config.train.num_steps = args.steps
  config.train.batch_size = args.batch_size
  config.train.log_every = config.train.checkpoint_every = config.train.eval_every = args.steps
  config.train.progress_bar = False
  dataset, train_x, _ = classification.load_standardized(config, config.data.name)
  batch_fn = data.make_batch_fn({"x": train_x, "y": dataset["train"]["y"]}, args.batch_size, config.seed)
  model = MLP(hidden=tuple(config.model.hidden), num_classes=dataset.num_classes)
  tx = trainer.make_optimizer(config.optimizer, args.steps)

  bare, shared = [], []
  for i in range(args.rounds):  # alternate which loop goes first, so drift hits both alike
    pair = [lambda: bare.append(bare_loop(model, tx, batch_fn, args.steps, config.seed, train_x.shape[1],
                                          args.same_metrics)),
            lambda: shared.append(trainer_loop(config, model, batch_fn, train_x.shape[1]))]
    for run in (pair if i % 2 == 0 else pair[::-1]):
      run()
  overheads = sorted(100 * (b / s - 1) for b, s in zip(bare, shared))
  median = statistics.median(overheads)
  print(f"dataset={args.dataset} model=MLP{tuple(config.model.hidden)} batch={args.batch_size} "
        f"steps={args.steps} rounds={args.rounds} devices={jax.device_count()}")
  print(f"bare loop computes the trainer's per-step metrics: {args.same_metrics}")
  print(f"bare jitted loop : median {statistics.median(bare):8.1f} steps/s (rounds: {', '.join(f'{x:.1f}' for x in bare)})")
  print(f"shared trainer   : median {statistics.median(shared):8.1f} steps/s (rounds: {', '.join(f'{x:.1f}' for x in shared)})")
  print(f"trainer overhead : median {median:+.1f}% over {len(overheads)} paired rounds "
        f"(spread {overheads[0]:+.1f}% .. {overheads[-1]:+.1f}%; target <= 2%)")
  if args.json:
    device = jax.devices()[0]
    with open(args.json, "w") as f:
      json.dump({"device": device.device_kind, "platform": device.platform,
                 "devices": jax.device_count(), "dataset": args.dataset, "steps": args.steps,
                 "rounds": args.rounds, "batch_size": args.batch_size,
                 "same_metrics": args.same_metrics, "bare_steps_per_second": bare,
                 "trainer_steps_per_second": shared, "overhead_percent_median": median,
                 "overhead_percent_per_round": overheads}, f, indent=1)


if __name__ == "__main__":
  main()
