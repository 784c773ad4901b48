"""The shared trainer: one loop for every gradient-trained model in lmsys.

Read top to bottom like big_vision's train.py: optimizer, mesh and state,
update step, checkpoint restore, train loop. Design choices, each for a reason:

- Batches come from `batch_fn(step)` and the step's randomness is
  `fold_in(key(seed), step)` inside the jitted step, so a resumed run draws
  exactly the numbers an uninterrupted run would (bitwise equal on CPU).
- The batch is sharded over a `data` mesh axis of every device and the state is
  replicated and donated; `jax.jit` inserts the gradient all-reduce.
- The step is compiled once, ahead of time, on the first batch; the compile
  time goes to metrics.jsonl as its own row (split "compile"), and steps/s
  counts neither it nor the eval and checkpoint pauses.
- A non-finite loss is recorded inside the step (no host sync per step) and
  reported at the next log/eval/checkpoint boundary with the step where it
  happened, before anything is saved, so the last good checkpoint stays intact.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from lmsys import checkpoint, timing
from lmsys import config as config_lib
from lmsys.config import ConfigError, check_positive_int, get


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN/inf; the message names the step."""


@dataclasses.dataclass
class TrainResult:
  params: Any
  step: int
  train_metrics: dict
  eval_metrics: dict
  steps_per_second: float


# ---------------------------------------------------------------------------
# Validation (called by experiments' `validate` before any compute).
# ---------------------------------------------------------------------------
def validate_config(config) -> None:
  for key in ("train.num_steps", "train.batch_size", "train.log_every",
              "train.eval_every", "train.checkpoint_every"):
    check_positive_int(config, key)
  if not isinstance(get(config, "seed"), int):
    raise ConfigError(f"config key 'seed': expected an integer, got {get(config, 'seed')!r}")
  name = get(config, "optimizer.name")
  if not isinstance(name, str) or not callable(getattr(optax, name, None)) or name.startswith("_"):
    raise ConfigError(f"config key 'optimizer.name': unknown optax optimizer {name!r}")
  lr = get(config, "optimizer.learning_rate")
  if not isinstance(lr, (int, float)) or lr <= 0:
    raise ConfigError(f"config key 'optimizer.learning_rate': expected a positive number, got {lr!r}")
  schedule = get(config, "optimizer.schedule", "constant")
  if schedule not in ("constant", "cosine"):
    raise ConfigError(f"config key 'optimizer.schedule': unknown schedule {schedule!r} (known: constant, cosine)")
  batch, devices = config.train.batch_size, jax.device_count()
  if batch % devices:
    raise ConfigError(f"config key 'train.batch_size': {batch} is not divisible by the {devices} devices")


def make_optimizer(opt_config, num_steps: int) -> optax.GradientTransformation:
  """Optax optimizer by name with warmup + constant/cosine schedule, decay, clipping."""
  peak, warmup = opt_config.learning_rate, int(get(opt_config, "warmup_steps", 0) or 0)
  if get(opt_config, "schedule", "constant") == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(num_steps, warmup + 1))
  elif warmup:
    lr = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])
  else:
    lr = peak
  factory = getattr(optax, opt_config.name)
  kwargs = dict(get(opt_config, "kwargs", None) or {})
  weight_decay = float(get(opt_config, "weight_decay", 0.0) or 0.0)
  chain = []
  if get(opt_config, "grad_clip_norm", 0.0):
    chain.append(optax.clip_by_global_norm(opt_config.grad_clip_norm))
  if weight_decay and "weight_decay" in inspect.signature(factory).parameters:
    kwargs["weight_decay"] = weight_decay
  elif weight_decay:
    # Optimizers without a weight_decay argument (adam, sgd, ...): L2 decay added to the
    # gradient before the optimizer (coupled, not AdamW-style; use adamw for decoupled decay).
    chain.append(optax.add_decayed_weights(weight_decay))
  chain.append(factory(learning_rate=lr, **kwargs))
  return optax.chain(*chain) if len(chain) > 1 else chain[0]


def _write_split(name: str, split: str) -> str:
  return f"{name}/{split}" if name else split


# ---------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------
def train(config, workdir: str, writer, *,
          init_fn: Callable[[jax.Array], Any],
          loss_fn: Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]],
          batch_fn: Callable[[int], Any],
          eval_fn: Callable[[Any], dict] | None = None,
          name: str = "") -> TrainResult:
  """Trains params from `init_fn` on `loss_fn`; resumes from `workdir/checkpoints`."""
  tc = config.train
  num_steps = tc.num_steps
  # Plain ints: the loop reads them every step, and a ConfigDict lookup is not free.
  log_every, eval_every, checkpoint_every = int(tc.log_every), int(tc.eval_every), int(tc.checkpoint_every)

  # -- Optimizer, mesh, state -------------------------------------------------
  tx = make_optimizer(config.optimizer, num_steps)
  # Auto axes: the returned params are plain replicated arrays that any later computation
  # (evaluation, decoding with a cache) can mix with unsharded inputs.
  mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  init_key, step_key = jax.random.split(jax.random.key(config.seed))

  def init_state(key):
    params = init_fn(key)
    return {"params": params, "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32),
            "nonfinite_step": jnp.full((), -1, jnp.int32)}

  abstract_state = jax.eval_shape(init_state, init_key)
  state_shardings = jax.tree.map(lambda _: replicated, abstract_state)

  # -- Update step ------------------------------------------------------------
  def train_step(state, batch):
    step, params = state["step"], state["params"]
    rng = jax.random.fold_in(step_key, step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_params = optax.apply_updates(params, updates)
    # Record the first non-finite step (a scalar select, no host sync). The
    # state is not frozen: the host raises at the next boundary, before any save.
    first_bad = (state["nonfinite_step"] < 0) & ~jnp.isfinite(loss)
    new_state = {
        "params": new_params,
        "opt_state": opt_state,
        "step": step + 1,
        "nonfinite_step": jnp.where(first_bad, step, state["nonfinite_step"]),
    }
    # The logged values are those of the logged step itself; the gradient norm (a
    # reduction over every parameter) is only worth its cost on the steps that log it.
    logs = ((step + 1) % log_every == 0) | (step + 1 == num_steps)
    grad_norm = jax.lax.cond(logs, lambda g: optax.tree.norm(g).astype(jnp.float32),
                             lambda g: jnp.zeros((), jnp.float32), grads)
    metrics = {"loss": loss, "grad_norm": grad_norm, **aux}
    return new_state, metrics

  update = jax.jit(train_step, in_shardings=(state_shardings, data_sharding),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)

  # -- Load checkpoint or initialise -----------------------------------------
  ckpt_dir = os.path.join(workdir, "checkpoints", name) if name else os.path.join(workdir, "checkpoints")
  mngr = checkpoint.manager(ckpt_dir, max_to_keep=get(config, "train.keep_checkpoints", 3))
  meta = {"name": name, "seed": config.seed, "num_steps": num_steps}
  latest = mngr.latest_step()
  if latest is not None:
    state, _ = checkpoint.restore(mngr, latest, checkpoint.abstract_like(abstract_state, state_shardings))
  else:
    state = jax.jit(init_state, out_shardings=state_shardings)(init_key)
  start = int(state["step"])

  def host_local(tree):
    # Replicated arrays of a multi-host mesh as this host's copy, so eval code
    # can mix them with host numpy arrays.
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda a: a.addressable_data(0), tree)

  def check_finite(state):
    bad = int(state["nonfinite_step"])
    if bad >= 0:
      mngr.wait_until_finished()
      last = mngr.latest_step()
      raise NonFiniteLossError(
          f"non-finite loss at step {bad}{f' ({name})' if name else ''}; training stopped, "
          f"last good checkpoint: {'none' if last is None else f'step {last}'} in {ckpt_dir}")

  def put_batch(batch):
    # On one host, jit shards host arrays itself (cheaper than a device_put per
    # step); across hosts each process holds its slice of the global batch.
    if jax.process_count() == 1:
      return batch
    rows = config.train.batch_size // jax.process_count()
    local = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(data_sharding, a[local]), batch)

  # -- Train loop -------------------------------------------------------------
  show_bar = bool(get(config, "train.progress_bar", True)) and sys.stderr.isatty()
  bar = tqdm(total=num_steps, initial=start, disable=not show_bar, desc=name or "train",
             dynamic_ncols=True, unit="step")
  train_metrics, eval_metrics = {}, {}
  timed_steps, t0, paused = 0, None, 0.0  # steps/s excludes eval and checkpoint pauses
  # -- Compile once ---------------------------------------------------------
  # Ahead of time, on the first batch: the step is compiled exactly once per
  # run (a batch of another shape or dtype is an error here, never a silent
  # recompilation), and the compile time is reported on its own.
  first_batch = put_batch(batch_fn(start)) if start < num_steps else None
  if first_batch is not None:
    with timing.Stopwatch() as compile_watch:
      update = update.lower(state, first_batch).compile()
    writer.write(start, _write_split(name, "compile"), compile_seconds=compile_watch.seconds)

  for step in range(start, num_steps):
    batch = first_batch if step == start else put_batch(batch_fn(step))
    state, metrics = update(state, batch)
    done = step + 1
    bar.update(1)
    if t0 is None:  # exclude compilation from the throughput figure
      jax.block_until_ready(metrics)
      t0 = time.perf_counter()
    else:
      timed_steps += 1
    is_last = done == num_steps
    if done % log_every == 0 or is_last:
      check_finite(state)
      train_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      rate = timed_steps / (time.perf_counter() - t0 - paused) if timed_steps else float("nan")
      writer.write(done, _write_split(name, "train"), train_metrics, steps_per_second=rate)
      bar.set_postfix(loss=f"{train_metrics['loss']:.4f}")
    if eval_fn is not None and (done % eval_every == 0 or is_last):
      check_finite(state)
      pause_start = time.perf_counter()
      eval_metrics = {k: float(v) for k, v in eval_fn(host_local(state["params"])).items()}
      writer.write(done, _write_split(name, "eval"), eval_metrics)
      paused += time.perf_counter() - pause_start
    if done % checkpoint_every == 0 or is_last:
      check_finite(state)
      pause_start = time.perf_counter()
      checkpoint.save(mngr, done, state, meta)
      paused += time.perf_counter() - pause_start
  bar.close()
  if timed_steps:
    jax.block_until_ready(state)
  steps_per_second = timed_steps / (time.perf_counter() - t0 - paused) if timed_steps else float("nan")

  if start >= num_steps and eval_fn is not None:  # resumed a finished run: report, don't retrain
    eval_metrics = {k: float(v) for k, v in eval_fn(host_local(state["params"])).items()}
  mngr.wait_until_finished()
  mngr.close()
  writer.flush()
  return TrainResult(params=host_local(state["params"]), step=int(state["step"]), train_metrics=train_metrics,
                     eval_metrics=eval_metrics, steps_per_second=steps_per_second)
