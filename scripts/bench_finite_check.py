"""Per-step cost of the trainer's non-finite check (issue 11): loss only vs loss + every leaf.

Two jitted copies of the trainer's update (the scripts/bench_trainer.py MLP on
Fashion-MNIST-shaped random batches, Adam): one records only a non-finite loss
(the check before issue 11), the other also flags every gradient and new
parameter leaf with `lmsys.trainer._finite_leaves`, as the trainer did in every step
from issue 11 until 2026-12-02 (it now runs them only in a replay after a failure).
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
  loss_fn = classification.make_loss_fn(model)

  def step(state, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, None)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    kind = jnp.where(jnp.isfinite(loss), 0, 1)
    leaf = jnp.zeros((), jnp.int32)
    if full_check:
      grads_ok, params_ok = trainer._finite_leaves(grads), trainer._finite_leaves(new_params)  # pylint: disable=protected-access
      kind = kind | jnp.where(grads_ok.all(), 0, 2) | jnp.where(params_ok.all(), 0, 4)
      leaf = jnp.where(grads_ok.all(), jnp.argmin(params_ok), jnp.argmin(grads_ok)).astype(jnp.int32)
    bad = (state["bad_step"] < 0) & (kind > 0)
    return {"params": new_params, "opt_state": opt_state,
            "bad_step": jnp.where(bad, 0, state["bad_step"]), "kind": jnp.where(bad, kind, state["kind"]),
            "leaf": jnp.where(bad, leaf, state["leaf"])}, loss

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
    return {"params": jax.tree.map(jnp.copy, params), "opt_state": tx.init(params),
            "bad_step": jnp.int32(-1), "kind": jnp.int32(0), "leaf": jnp.int32(0)}

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
      state, loss = steps[full](state, batch)
      jax.block_until_ready(loss)
      start = time.process_time()
      for _ in range(args.steps):
        state, loss = steps[full](state, batch)
      jax.block_until_ready(state)
      rates[full].append(args.steps / (time.process_time() - start))
  overheads = sorted(100 * (a / b - 1) for a, b in zip(rates[False], rates[True]))
  print(f"{names[False]:14s}: median {statistics.median(rates[False]):.0f} steps/s (CPU time)")
  print(f"{names[True]:14s}: median {statistics.median(rates[True]):.0f} steps/s (CPU time)")
  print(f"check overhead: median {statistics.median(overheads):+.1f}% over {len(overheads)} paired rounds "
        f"(spread {overheads[0]:+.1f}% .. {overheads[-1]:+.1f}%)")


if __name__ == "__main__":
  main()
