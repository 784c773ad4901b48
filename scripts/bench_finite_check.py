"""Per-step cost of the trainer's non-finite check: loss only vs loss + every leaf.

The trainer's own update step (`lmsys.trainer.make_train_step`, the scripts/bench_trainer.py
MLP on Fashion-MNIST-shaped random batches, Adam), compiled twice: as the loop runs it (a
non-finite loss recorded every step) and as the replay after a failure runs it
(`check_leaves=True`: a finite flag per gradient and new-parameter leaf).
Timed in CPU time of this process (less disturbed than wall time by other
processes on a shared machine), alternating A/B rounds; reports the median of
the per-round ratios with their spread, and XLA's cost analysis of each step.

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
      python scripts/bench_finite_check.py [--rounds 21] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import trainer
from lmsys.models.mlp import MLP
from lmsys.tasks import classification


def make_step(model, tx, full_check: bool):
  """The trainer's own update step (`lmsys.trainer.make_train_step`), jitted, with or without leaf flags."""
  step = trainer.make_train_step(classification.make_loss_fn(model), tx, jax.random.key(1), log_every=1 << 30,
                                 num_steps=1 << 30, check_leaves=full_check)
  return jax.jit(step, donate_argnums=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=21)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch_size", type=int, default=128)
  args = parser.parse_args()

  model = MLP(hidden=(256, 256), num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  batch = {"x": rng.standard_normal((args.batch_size, 784)).astype(np.float32),
           "y": rng.integers(0, 10, args.batch_size).astype(np.int32)}

  def fresh_state():
    return trainer.init_state(lambda key: jax.tree.map(jnp.copy, params), tx, jax.random.key(0))

  names = {False: "loss only", True: "loss + leaves"}
  steps = {}
  for full in (False, True):
    steps[full] = make_step(model, tx, full).lower(fresh_state(), batch).compile()
    cost = steps[full].cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(f"{names[full]:14s}: XLA cost analysis: {cost.get('flops'):.4g} flops, "
          f"{cost.get('bytes accessed'):.4g} bytes accessed")
  rates = {False: [], True: []}
  for i in range(args.rounds):
    for full in ((False, True) if i % 2 == 0 else (True, False)):
      state = fresh_state()
      state, metrics = steps[full](state, batch)
      jax.block_until_ready(metrics)
      start = time.process_time()
      for _ in range(args.steps):
        state, metrics = steps[full](state, batch)
      jax.block_until_ready(state)
      rates[full].append(args.steps / (time.process_time() - start))
  overheads = sorted(100 * (a / b - 1) for a, b in zip(rates[False], rates[True]))
  print(f"{names[False]:14s}: median {statistics.median(rates[False]):.0f} steps/s (CPU time)")
  print(f"{names[True]:14s}: median {statistics.median(rates[True]):.0f} steps/s (CPU time)")
  print(f"check overhead: median {statistics.median(overheads):+.1f}% over {len(overheads)} paired rounds "
        f"(spread {overheads[0]:+.1f}% .. {overheads[-1]:+.1f}%)")


if __name__ == "__main__":
  main()
