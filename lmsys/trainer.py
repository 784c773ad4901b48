"""The shared trainer: one loop for every gradient-trained model in lmsys.

Read top to bottom like big_vision's train.py: optimizer, mesh and state,
update step, checkpoint restore, train loop. Design choices, each for a reason:

- Batches come from `batch_fn(step, process_index=, process_count=)` (each
  process builds only its rows) and the step's randomness is
  `fold_in(key(seed), step)` inside the jitted step, so a resumed run draws
  exactly the numbers an uninterrupted run would (bitwise equal on CPU).
- The batch is sharded over a `data` mesh axis of every device and the state is
  replicated and donated; `jax.jit` inserts the gradient all-reduce.
- The step is compiled once, ahead of time, on the first batch; the compile
  time goes to metrics.jsonl as its own row (split "compile"), and steps/s
  counts neither it nor the eval and checkpoint pauses.
- A non-finite loss is recorded inside the step (a scalar, no host sync) and
  the parameters are checked at every log/eval/checkpoint boundary, before
  anything is saved, so the last good checkpoint stays intact. On a failure the
  run is replayed from that checkpoint with a finite flag per gradient and
  parameter leaf, to report the step where it happened and the first
  offending parameter path (checking every leaf every step cost ~10% a step).
- Resume and faults (docs/reliability.md): the newest readable checkpoint is
  restored (unreadable ones are moved aside); metrics rows this trainer wrote
  after it are removed, since the resume writes them again; SIGTERM/SIGINT
  finish the step in flight, save a checkpoint and stop with `Interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import signal
import sys
import threading
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
  """The loss, a gradient or a parameter became NaN/inf; the message names the step and path."""


class Interrupted(Exception):
  """SIGTERM/SIGINT stopped training after saving a checkpoint; the message says where."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


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
          batch_fn: Callable[..., Any],
          eval_fn: Callable[[Any], dict] | None = None,
          name: str = "") -> TrainResult:
  """Trains params from `init_fn` on `loss_fn`; resumes from `workdir/checkpoints`."""
  with _stop_signals() as received:
    return _train(config, workdir, writer, init_fn=init_fn, loss_fn=loss_fn, batch_fn=batch_fn,
                  eval_fn=eval_fn, name=name, received=received)


@contextlib.contextmanager
def _stop_signals():
  """Records SIGTERM/SIGINT (preemption, Ctrl-C) in a list the loop polls once a step.

  The loop then saves a checkpoint and raises `Interrupted`. A second signal
  gets the previous handler (a second Ctrl-C interrupts at once). Signals can
  only be caught on the main thread; elsewhere nothing is installed.
  """
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  previous = {}

  def handler(signum, frame):
    del frame
    received.append(signum)
    signal.signal(signum, previous[signum])

  for sig in (signal.SIGTERM, signal.SIGINT):
    previous[sig] = signal.signal(sig, handler)
    if previous[sig] is None:  # installed outside Python
      previous[sig] = signal.SIG_DFL
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def _stale_row(row: dict, step: int, name: str) -> bool:
  """A metrics row of this trainer that a resume from `step` writes again.

  Its own splits (train/eval/compile, or `<name>/...` for a named run) at
  steps after `step`, and those at `step` other than train/eval (which precede
  the checkpoint at `step`; a compile or summary row at `step` comes after it).
  """
  split, row_step = str(row.get("split", "")), row.get("step", -1)
  own = split.startswith(f"{name}/") if name else split in ("train", "eval", "compile")
  if not own or not isinstance(row_step, (int, float)):
    return False
  return row_step > step or (row_step == step and split.rsplit("/", 1)[-1] not in ("train", "eval"))


def _finite_leaves(tree) -> jax.Array:
  """[number of leaves] bool: leaf i has no NaN/inf (one reduction a leaf, fused by XLA)."""
  return jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)])


def _param_paths(params) -> list[str]:
  """'params/Dense_0/kernel', ... in leaf order (the order of `_finite_leaves`)."""
  return ["params/" + jax.tree_util.keystr(path, simple=True, separator="/")
          for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def _train(config, workdir, writer, *, init_fn, loss_fn, batch_fn, eval_fn, name, received) -> TrainResult:
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
            "nonfinite_step": jnp.full((), -1, jnp.int32),
            # What was first non-finite (bits: 1 loss, 2 gradient, 4 parameter) and the
            # index of the first such gradient/parameter leaf. Not checkpointed (a save only
            # happens while they are unset), so older checkpoints still restore.
            "nonfinite_kind": jnp.zeros((), jnp.int32),
            "nonfinite_leaf": jnp.zeros((), jnp.int32)}

  abstract_state = jax.eval_shape(init_state, init_key)
  state_shardings = jax.tree.map(lambda _: replicated, abstract_state)

  # -- Update step ------------------------------------------------------------
  def make_train_step(check_leaves: bool):
    """The update step; check_leaves adds a finite flag per gradient and new-parameter leaf.

    The loop runs the step without them: a non-finite loss is recorded every step
    (a scalar), and the parameters are checked at every log/eval/checkpoint
    boundary, before any save. Only when either fails is the step with leaf
    flags compiled and the run replayed from its last checkpoint to find the
    first bad step and leaf (`locate_nonfinite`): checking every leaf every
    step cost +8-11% per step on small models (docs/results/trainer.md).
    """
    def train_step(state, batch):
      step, params = state["step"], state["params"]
      rng = jax.random.fold_in(step_key, step)
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
      updates, opt_state = tx.update(grads, state["opt_state"], params)
      new_params = optax.apply_updates(params, updates)
      # Record the first non-finite step, what it was and where (scalar selects, no host sync).
      kind = jnp.where(jnp.isfinite(loss), 0, 1)
      leaf = jnp.zeros((), jnp.int32)
      if check_leaves:
        grads_ok, params_ok = _finite_leaves(grads), _finite_leaves(new_params)
        kind = kind | jnp.where(grads_ok.all(), 0, 2) | jnp.where(params_ok.all(), 0, 4)
        leaf = jnp.where(grads_ok.all(), jnp.argmin(params_ok), jnp.argmin(grads_ok)).astype(jnp.int32)
      first_bad = (state["nonfinite_step"] < 0) & (kind > 0)
      new_state = {
          "params": new_params,
          "opt_state": opt_state,
          "step": step + 1,
          "nonfinite_step": jnp.where(first_bad, step, state["nonfinite_step"]),
          "nonfinite_kind": jnp.where(first_bad, kind, state["nonfinite_kind"]),
          "nonfinite_leaf": jnp.where(first_bad, leaf, state["nonfinite_leaf"]),
      }
      # The logged values are those of the logged step itself; the gradient norm (a
      # reduction over every parameter) is only worth its cost on the steps that log it.
      logs = ((step + 1) % log_every == 0) | (step + 1 == num_steps)
      grad_norm = jax.lax.cond(logs, lambda g: optax.tree.norm(g).astype(jnp.float32),
                               lambda g: jnp.zeros((), jnp.float32), grads)
      metrics = {"loss": loss, "grad_norm": grad_norm, **aux}
      return new_state, metrics

    return jax.jit(train_step, in_shardings=(state_shardings, data_sharding),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)

  update = make_train_step(check_leaves=False)
  params_finite = jax.jit(lambda params: _finite_leaves(params).all())

  # -- Load checkpoint or initialise -----------------------------------------
  ckpt_dir = os.path.join(workdir, "checkpoints", name) if name else os.path.join(workdir, "checkpoints")
  mngr = checkpoint.manager(ckpt_dir, max_to_keep=get(config, "train.keep_checkpoints", 3))
  meta = {"name": name, "seed": config.seed, "num_steps": num_steps}
  saved = lambda tree: {k: v for k, v in tree.items() if k not in ("nonfinite_kind", "nonfinite_leaf")}
  param_paths = _param_paths(abstract_state["params"])

  def restore_or_init():
    """The state of the newest readable checkpoint, or the initial state if there is none."""
    restored = checkpoint.restore_latest(
        mngr, checkpoint.abstract_like(saved(abstract_state), saved(state_shardings)))
    if restored is None:
      return jax.jit(init_state, out_shardings=state_shardings)(init_key)
    zero = jax.jit(lambda: jnp.zeros((), jnp.int32), out_shardings=replicated)
    return {**restored[0], "nonfinite_kind": zero(), "nonfinite_leaf": zero()}

  state = restore_or_init()
  start = int(state["step"])
  # Rows written after that checkpoint (by a killed run) are written again below: remove them.
  # TensorBoard hides its later events too, for an unnamed run (a workdir's named runs share
  # one event directory, where a purge would hide the other runs' later steps).
  writer.rewind(lambda row: _stale_row(row, start, name), purge_step=None if name else start + 1)

  def host_local(tree):
    # Replicated arrays of a multi-host mesh as this host's copy, so eval code
    # can mix them with host numpy arrays.
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda a: a.addressable_data(0), tree)

  def check_finite(state):
    """At a boundary, before any save: raise if the loss or a parameter went non-finite."""
    if int(state["nonfinite_step"]) < 0 and bool(params_finite(state["params"])):
      return
    checkpoint.wait(mngr)
    last = mngr.latest_step()
    found = locate_nonfinite(int(state["step"]))
    if found is None:  # not reproduced (a non-deterministic backend): say what was seen
      bad = int(state["nonfinite_step"])
      seen = f"loss at step {bad}" if bad >= 0 else f"parameter by step {int(state['step'])}"
      message = (f"non-finite {seen}{f' ({name})' if name else ''}; replaying from "
                 f"{'the start' if last is None else f'step {last}'} did not reproduce it, so the first bad "
                 f"gradient/parameter is unknown")
    else:
      bad, kind, leaf = found
      path = param_paths[leaf]
      what = "loss" if kind & 1 else "gradient" if kind & 2 else "parameter"
      where = (f"first non-finite gradient: {path}" if kind & 2 else
               f"first non-finite parameter: {path}" if kind & 4 else "gradients and parameters finite")
      message = f"non-finite {what} at step {bad}{f' ({name})' if name else ''}; {where}"
    raise NonFiniteLossError(f"{message}; training stopped, last good checkpoint: "
                             f"{'none' if last is None else f'step {last}'} in {ckpt_dir}")

  def locate_nonfinite(stop):
    """(step, kind, leaf) of the first non-finite loss/gradient/parameter before `stop`, or None.

    Replays from the last checkpoint (or the initial state) with per-leaf flags:
    batches and randomness are functions of the step, so the replay computes what
    the run did (bitwise on CPU). Costs at most one checkpoint interval of steps,
    and only when something went wrong.
    """
    replay = restore_or_init()
    checked = make_train_step(check_leaves=True)
    for step in range(int(replay["step"]), stop):
      replay, _ = checked(replay, put_batch(step))
      if int(replay["nonfinite_step"]) >= 0:
        return int(replay["nonfinite_step"]), int(replay["nonfinite_kind"]), int(replay["nonfinite_leaf"])
    return None

  # Per-host input: a batch_fn taking process_index/process_count builds only this
  # process's rows of the global batch (lmsys.data.batch_rows); one taking only
  # the step builds the whole global batch and each process keeps its slice.
  per_host_input = "process_index" in inspect.signature(batch_fn).parameters

  def put_batch(step):
    processes, index = jax.process_count(), jax.process_index()
    if per_host_input:
      batch = batch_fn(step, process_index=index, process_count=processes)
    else:
      batch = batch_fn(step)
      if processes > 1:
        rows = config.train.batch_size // processes
        batch = jax.tree.map(lambda a: a[index * rows:(index + 1) * rows], batch)
    # On one host, jit shards host arrays itself (cheaper than a device_put per
    # step); across hosts the process's rows become its shards of the global batch.
    if processes == 1:
      return batch
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(
        data_sharding, a, (config.train.batch_size, *a.shape[1:])), batch)

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
  first_batch = put_batch(start) if start < num_steps else None
  if first_batch is not None:
    with timing.Stopwatch() as compile_watch:
      update = update.lower(state, first_batch).compile()
    writer.write(start, _write_split(name, "compile"), compile_seconds=compile_watch.seconds)

  for step in range(start, num_steps):
    batch = first_batch if step == start else put_batch(step)
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
    saves = done % checkpoint_every == 0 or is_last
    if saves:
      check_finite(state)
      pause_start = time.perf_counter()
      checkpoint.save(mngr, done, saved(state), meta)
      paused += time.perf_counter() - pause_start
    if received:  # SIGTERM/SIGINT: the step in flight is done; save it (if not just saved) and stop
      check_finite(state)
      if not saves:
        checkpoint.save(mngr, done, saved(state), meta)
      checkpoint.wait(mngr)
      bar.close()
      raise Interrupted(f"{signal.Signals(received[0]).name}: stopped at step {done}{f' ({name})' if name else ''}; "
                        f"checkpoint saved in {ckpt_dir}; run the same command to resume", received[0])
  bar.close()
  if timed_steps:
    jax.block_until_ready(state)
  steps_per_second = timed_steps / (time.perf_counter() - t0 - paused) if timed_steps else float("nan")

  if start >= num_steps and eval_fn is not None:  # resumed a finished run: report, don't retrain
    eval_metrics = {k: float(v) for k, v in eval_fn(host_local(state["params"])).items()}
  checkpoint.wait(mngr)
  mngr.close()
  writer.flush()
  return TrainResult(params=host_local(state["params"]), step=int(state["step"]), train_metrics=train_metrics,
                     eval_metrics=eval_metrics, steps_per_second=steps_per_second)
