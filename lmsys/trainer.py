"""The shared trainer: one loop for every gradient-trained model in lmsys.

Read top to bottom like big_vision's train.py: validation and the optimizer, then
the pieces `train` is made of (`init_state`, `make_train_step`: importable, the
benchmarks use them), then `train` and its stages in the order it runs them
(`_build`: optimizer, mesh, shardings, checkpoint manager; `_restore_or_init`;
`_make_put_batch`; `_compile`; `_loop`). Design choices, each for a reason:

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
- Progress: a tqdm bar on a terminal; otherwise (SLURM, nohup, a sweep) one
  line per log step and at least one a minute (`Progress`). At the start of a
  fresh run: the devices and a parameter overview.
- Resume and faults (docs/reliability.md): the newest readable checkpoint is
  restored (unreadable ones are moved aside); metrics rows this trainer wrote
  after it are removed, since the resume writes them again; SIGTERM/SIGINT
  finish the step in flight, save a checkpoint and stop with `Interrupted`.
  On several hosts a SIGTERM to any one of them stops all of them at the same
  step: it is JAX's preemption notice, and every host saves at the step JAX's
  preemption sync point names (`_preemption_synced`).
- Checkpoints are orbax's to decide (lmsys.checkpoint.manager): its save
  policies allow the saves at `checkpoint_every`, the last step and a stop,
  and its preservation policy keeps the newest `keep_checkpoints`.
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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from lmsys import checkpoint, paths, timing
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
  """What `train` returns: final params, the step reached, the last train/eval metrics, steps/s."""
  params: Any
  step: int
  train_metrics: dict
  eval_metrics: dict
  steps_per_second: float


# ---------------------------------------------------------------------------
# Validation (called by experiments' `validate` before any compute).
# ---------------------------------------------------------------------------
def validate_config(config) -> None:
  """Checks the keys the trainer reads (train.*, seed, optimizer.*), before any compute.

  Args:
    config: the experiment config.

  Raises:
    ConfigError: naming the first bad key and its value.
  """
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
  """An optax optimizer by name with warmup + constant/cosine schedule, decay and clipping.

  Args:
    opt_config: the `optimizer` section (`lmsys.config.optimizer_defaults`).
    num_steps: the run's length (the cosine schedule decays to 0 there).

  Returns:
    The chained gradient transformation.
  """
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
  """The metrics split of a named sub-run ('<name>/train') or of the run ('train')."""
  return f"{name}/{split}" if name else split


def _preemption_synced() -> bool:
  """Whether a stop is JAX's multi-host preemption sync (several processes joined by jax.distributed).

  `jax.distributed.initialize` starts JAX's preemption sync manager (config
  `jax_enable_preemption_service`, on by default), which installs its own SIGTERM
  handler: a SIGTERM to any process makes every process reach a sync point at the same
  step (`multihost_utils.reached_preemption_sync_point`, which orbax's
  `CheckpointManager.reached_preemption` and PreemptionCheckpointingPolicy ask). The
  trainer then leaves SIGTERM to JAX. Without jax.distributed (one process, or hosts
  joined otherwise) the trainer's own handler decides, on this process only.
  """
  return (jax.process_count() > 1 and jax.distributed.is_initialized()
          and bool(jax.config.jax_enable_preemption_service))


@contextlib.contextmanager
def _stop_signals(synced: bool = False):
  """Records SIGTERM/SIGINT (preemption, Ctrl-C) in a list the loop polls once a step.

  The loop then saves a checkpoint and raises `Interrupted`. A second signal
  gets the previous handler (a second Ctrl-C interrupts at once). Signals can
  only be caught on the main thread; elsewhere nothing is installed.

  With `synced` (`_preemption_synced`) SIGTERM is left to JAX's handler (replacing it
  would hide the notice from the other hosts), and a SIGINT is recorded and passed on to
  JAX as a SIGTERM to this process, so a Ctrl-C on one host also stops every host at one
  step. A second SIGTERM is then JAX's to handle (it only records the notice again).
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
    if synced:
      signal.raise_signal(signal.SIGTERM)  # JAX's preemption notice, shared with every host

  for sig in (signal.SIGINT,) if synced else (signal.SIGTERM, signal.SIGINT):
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


def finite_leaves(tree) -> jax.Array:
  """Whether each leaf of `tree` is free of NaN/inf.

  Args:
    tree: a pytree of arrays.

  Returns:
    bool [number of leaves]: entry i is True when leaf i is finite (one reduction a leaf,
    fused by XLA).
  """
  return jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)])


def param_paths(params) -> list[str]:
  """'params/Dense_0/kernel', ... in leaf order (the order of `finite_leaves`)."""
  return ["params/" + jax.tree_util.keystr(path, simple=True, separator="/")
          for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def parameter_overview(params) -> str:
  """A table of parameter count and bytes per top-level module (as clu's parameter_overview).

  Args:
    params: a pytree of arrays or ShapeDtypeStructs (e.g. from `jax.eval_shape`).

  Returns:
    Lines `module  count  bytes`, the total last.
  """
  rows: dict[str, list[int]] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    top = jax.tree_util.keystr(path[:1], simple=True, separator="/") if path else "(root)"
    count = int(np.prod(leaf.shape))
    row = rows.setdefault(top, [0, 0])
    row[0] += count
    row[1] += count * np.dtype(leaf.dtype).itemsize
  total = [sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())]
  width = max([len(k) for k in rows] + [len("total")])
  lines = [f"{'module':<{width}}  {'parameters':>12}  {'bytes':>12}"]
  lines += [f"{k:<{width}}  {c:>12,}  {b:>12,}" for k, (c, b) in rows.items()]
  lines.append(f"{'total':<{width}}  {total[0]:>12,}  {total[1]:>12,}")
  return "\n".join(lines)


def init_state(init_fn: Callable[[jax.Array], Any], tx: optax.GradientTransformation, key: jax.Array) -> dict:
  """The training state: params, optimizer state, step, and the first non-finite step seen.

  Args:
    init_fn: key -> params.
    tx: the optimizer.
    key: the initialisation key.

  Returns:
    {'params', 'opt_state', 'step', 'nonfinite_step' (-1: none), 'nonfinite_kind' (bits:
    1 loss, 2 gradient, 4 parameter), 'nonfinite_leaf' (index of the first bad leaf)}.
    The last two are never checkpointed (a save happens only while they are unset).
  """
  params = init_fn(key)
  return {"params": params, "opt_state": tx.init(params),
          "step": jnp.zeros((), jnp.int32),
          "nonfinite_step": jnp.full((), -1, jnp.int32),
          "nonfinite_kind": jnp.zeros((), jnp.int32),
          "nonfinite_leaf": jnp.zeros((), jnp.int32)}


def make_train_step(loss_fn: Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]],
                    tx: optax.GradientTransformation, step_key: jax.Array, *, log_every: int,
                    num_steps: int, check_leaves: bool = False) -> Callable[[dict, Any], tuple[dict, dict]]:
  """The update step `(state, batch) -> (state, metrics)`, not yet jitted.

  The step's randomness is `fold_in(step_key, step)`, so a resumed run draws what an
  uninterrupted one would. A non-finite loss is recorded every step (a scalar select, no
  host sync); with `check_leaves` a finite flag per gradient and new-parameter leaf is
  recorded too. The loop runs without them and only compiles the checked step to replay
  from the last checkpoint when a boundary check fails (checking every leaf every step
  cost about a tenth of a step on small models). The gradient norm, a reduction over every
  parameter, is computed only on steps that log.

  Args:
    loss_fn: (params, batch, rng) -> (loss, aux metrics).
    tx: the optimizer.
    step_key: the key folded with the step number.
    log_every: steps between logged metrics (the grad norm is computed on those).
    num_steps: the last step also logs.
    check_leaves: add the per-leaf finite flags.

  Returns:
    The step function; metrics hold 'loss', 'grad_norm' (0 on steps that do not log) and aux.
  """
  def train_step(state, batch):
    step, params = state["step"], state["params"]
    rng = jax.random.fold_in(step_key, step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_params = optax.apply_updates(params, updates)
    kind = jnp.where(jnp.isfinite(loss), 0, 1)
    leaf = jnp.zeros((), jnp.int32)
    if check_leaves:
      grads_ok, params_ok = finite_leaves(grads), finite_leaves(new_params)
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
    logs = ((step + 1) % log_every == 0) | (step + 1 == num_steps)
    grad_norm = jax.lax.cond(logs, lambda g: optax.tree.norm(g).astype(jnp.float32),
                             lambda g: jnp.zeros((), jnp.float32), grads)
    return new_state, {"loss": loss, "grad_norm": grad_norm, **aux}

  return train_step


class Progress:
  """Progress for people: a tqdm bar on a terminal, else one line at each log step and each minute.

  A log file (SLURM, nohup, a sweep) then shows e.g.
  `step 120/3000 (4%) 1.7 steps/s eta 28m loss 2.31`.
  """

  def __init__(self, total: int, initial: int, name: str, bar: bool, every_seconds: float = 60.0):
    self.total, self.name, self.every = total, name, every_seconds
    self.terminal = sys.stderr.isatty()
    self.bar = tqdm(total=total, initial=initial, disable=not (bar and self.terminal), desc=name or "train",
                    dynamic_ncols=True, unit="step")
    self.loss = None
    self.last_line = time.monotonic()

  def update(self, done: int, rate: float, loss: float | None = None) -> None:
    """Called once a step; `loss` on the steps that log."""
    self.bar.update(1)
    if loss is not None:
      self.loss = loss
      self.bar.set_postfix(loss=f"{loss:.4f}")
    now = time.monotonic()
    if not self.terminal and (loss is not None or now - self.last_line >= self.every):
      self.last_line = now
      print(self.line(done, rate), file=sys.stderr, flush=True)

  def line(self, done: int, rate: float) -> str:
    """`[name] step D/T (P%) R steps/s eta E loss L`."""
    eta = ""
    if rate == rate and rate > 0:  # not NaN
      seconds = (self.total - done) / rate
      eta = f" eta {seconds / 3600:.1f}h" if seconds >= 5400 else f" eta {seconds / 60:.0f}m" \
          if seconds >= 90 else f" eta {seconds:.0f}s"
    rate_text = f" {rate:.3g} steps/s" if rate == rate else ""
    loss = f" loss {self.loss:.4g}" if self.loss is not None else ""
    prefix = f"{self.name}: " if self.name else ""
    return f"{prefix}step {done}/{self.total} ({100 * done // max(self.total, 1)}%){rate_text}{eta}{loss}"

  def close(self) -> None:
    self.bar.close()


# ---------------------------------------------------------------------------
# The stages of `train`, in the order it runs them.
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Setup:
  """What every stage of one training run shares (built once by `_build`)."""
  tx: optax.GradientTransformation
  replicated: NamedSharding
  data_sharding: NamedSharding
  state_shardings: Any
  abstract_state: Any
  init_key: jax.Array
  step_key: jax.Array
  mngr: Any
  ckpt_dir: str
  meta: dict
  name: str


def _build(config, workdir: epath.PathLike, init_fn, name: str, stop_requested: Callable[[], bool] | None) -> _Setup:
  """Optimizer, mesh and shardings, the abstract state and the checkpoint manager.

  The manager's policies save at multiples of `train.checkpoint_every`, at the last step, at
  a multi-host preemption sync point and, once `stop_requested()` is true, at the step in flight.
  """
  tx = make_optimizer(config.optimizer, config.train.num_steps)
  # Auto axes: the returned params are plain replicated arrays that any later computation
  # (evaluation, decoding with a cache) can mix with unsharded inputs.
  mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  abstract_state = jax.eval_shape(lambda key: init_state(init_fn, tx, key), init_key)
  checkpoints = paths.as_path(workdir) / "checkpoints"
  ckpt_dir = os.fspath(checkpoints / name if name else checkpoints)
  keep = get(config, "train.keep_checkpoints", config_lib.TRAIN_DEFAULTS["keep_checkpoints"])
  return _Setup(tx=tx, replicated=replicated, data_sharding=NamedSharding(mesh, P("data")),
                state_shardings=jax.tree.map(lambda _: replicated, abstract_state),
                abstract_state=abstract_state, init_key=init_key, step_key=step_key,
                mngr=checkpoint.manager(ckpt_dir, keep, save_every=int(config.train.checkpoint_every),
                                        final_step=int(config.train.num_steps), stop_requested=stop_requested),
                ckpt_dir=ckpt_dir,
                meta={"name": name, "seed": config.seed, "num_steps": config.train.num_steps}, name=name)


def _saved(state: dict) -> dict:
  """The part of the state a checkpoint holds."""
  return {k: v for k, v in state.items() if k not in ("nonfinite_kind", "nonfinite_leaf")}


def _jit_step(setup: _Setup, step_fn):
  return jax.jit(step_fn, in_shardings=(setup.state_shardings, setup.data_sharding),
                 out_shardings=(setup.state_shardings, setup.replicated), donate_argnums=0)


def _restore_or_init(setup: _Setup, init_fn) -> dict:
  """The state of the newest readable checkpoint, or the initial state if there is none."""
  restored = checkpoint.restore_latest(
      setup.mngr, checkpoint.abstract_like(_saved(setup.abstract_state), _saved(setup.state_shardings)))
  if restored is None:
    return jax.jit(lambda key: init_state(init_fn, setup.tx, key), out_shardings=setup.state_shardings)(
        setup.init_key)
  zero = jax.jit(lambda: jnp.zeros((), jnp.int32), out_shardings=setup.replicated)
  return {**restored[0], "nonfinite_kind": zero(), "nonfinite_leaf": zero()}


def _make_put_batch(config, batch_fn, data_sharding) -> Callable[[int], Any]:
  """step -> the batch as the jitted step takes it (this process's rows of the global batch).

  A batch_fn taking process_index/process_count builds only this process's rows
  (lmsys.data.batch_rows); one taking only the step builds the whole global batch and
  each process keeps its slice.
  """
  per_host_input = "process_index" in inspect.signature(batch_fn).parameters
  global_batch = config.train.batch_size

  def put_batch(step):
    processes, index = jax.process_count(), jax.process_index()
    if per_host_input:
      batch = batch_fn(step, process_index=index, process_count=processes)
    else:
      batch = batch_fn(step)
      if processes > 1:
        rows = global_batch // processes
        batch = jax.tree.map(lambda a: a[index * rows:(index + 1) * rows], batch)
    # On one host, jit shards host arrays itself (cheaper than a device_put per step);
    # across hosts the process's rows become its shards of the global batch.
    if processes == 1:
      return batch
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(
        data_sharding, a, (global_batch, *a.shape[1:])), batch)

  return put_batch


def _host_local(tree):
  """Replicated arrays of a multi-host mesh as this host's copy (eval code mixes them with numpy)."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(lambda a: a.addressable_data(0), tree)


def _locate_nonfinite(setup: _Setup, init_fn, loss_fn, put_batch, config, stop: int):
  """(step, kind, leaf) of the first non-finite loss/gradient/parameter before `stop`, or None.

  Replays from the last checkpoint (or the initial state) with per-leaf flags: batches
  and randomness are functions of the step, so the replay computes what the run did
  (bitwise on CPU). Costs at most one checkpoint interval of steps, and only on failure.
  """
  replay = _restore_or_init(setup, init_fn)
  checked = _jit_step(setup, make_train_step(loss_fn, setup.tx, setup.step_key, log_every=config.train.log_every,
                                             num_steps=config.train.num_steps, check_leaves=True))
  for step in range(int(replay["step"]), stop):
    replay, _ = checked(replay, put_batch(step))
    if int(replay["nonfinite_step"]) >= 0:
      return int(replay["nonfinite_step"]), int(replay["nonfinite_kind"]), int(replay["nonfinite_leaf"])
  return None


def _nonfinite_message(setup: _Setup, state, found, last) -> str:
  """What went non-finite, where, and which checkpoint is intact."""
  name = f" ({setup.name})" if setup.name else ""
  if found is None:  # not reproduced (a non-deterministic backend): say what was seen
    bad = int(state["nonfinite_step"])
    seen = f"loss at step {bad}" if bad >= 0 else f"parameter by step {int(state['step'])}"
    message = (f"non-finite {seen}{name}; replaying from {'the start' if last is None else f'step {last}'} "
               f"did not reproduce it, so the first bad gradient/parameter is unknown")
  else:
    bad, kind, leaf = found
    path = param_paths(setup.abstract_state["params"])[leaf]
    what = "loss" if kind & 1 else "gradient" if kind & 2 else "parameter"
    where = (f"first non-finite gradient: {path}" if kind & 2 else
             f"first non-finite parameter: {path}" if kind & 4 else "gradients and parameters finite")
    message = f"non-finite {what} at step {bad}{name}; {where}"
  return (f"{message}; training stopped, last good checkpoint: "
          f"{'none' if last is None else f'step {last}'} in {setup.ckpt_dir}")


def _compile(update, state, first_batch, writer, name: str, start: int):
  """Compiles the step once, ahead of time, on the first batch; writes the compile time.

  A batch of another shape or dtype later is an error, never a silent recompilation.
  """
  with timing.Stopwatch() as watch:
    compiled = update.lower(state, first_batch).compile()
  writer.write(start, _write_split(name, "compile"), compile_seconds=watch.seconds)
  return compiled


def _profile_window(config, start: int) -> tuple[int, int]:
  """[first, last) steps to trace with jax.profiler (`train.profile_steps`: a count, 0 = none).

  The trace starts one step after the first timed step, so compilation is not in it.
  """
  count = int(get(config, "train.profile_steps", config_lib.TRAIN_DEFAULTS["profile_steps"]) or 0)
  return (start + 2, start + 2 + count) if count > 0 else (-1, -1)


def _evaluate(eval_fn, state) -> dict:
  """eval_fn on this host's copy of the params, as floats."""
  return {k: float(v) for k, v in eval_fn(_host_local(state["params"])).items()}


def _profile(step: int, first: int, stop: int, trace_dir: str, state) -> None:
  """Starts a jax.profiler trace before step `first`; stops it before step `stop` (state ready)."""
  if step == first and first < stop:
    jax.profiler.start_trace(trace_dir)
  elif step == stop and first < stop:
    jax.block_until_ready(state)
    jax.profiler.stop_trace()


def _stop_on_signal(setup: _Setup, state, done: int, signum: int, synced: bool):
  """Saves the step in flight (orbax's policies: unless just saved), waits for the save, raises `Interrupted`."""
  checkpoint.save(setup.mngr, done, _saved(state), setup.meta)
  checkpoint.wait(setup.mngr)
  name = f" ({setup.name})" if setup.name else ""
  why = signal.Signals(signum).name
  if synced:
    why += f" (a preemption notice, synchronised over the {jax.process_count()} processes)"
  raise Interrupted(f"{why}: stopped at step {done}{name}; "
                    f"checkpoint saved in {setup.ckpt_dir}; run the same command to resume", signum)


def train(config, workdir: epath.PathLike, writer, *,
          init_fn: Callable[[jax.Array], Any],
          loss_fn: Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]],
          batch_fn: Callable[..., Any],
          eval_fn: Callable[[Any], dict] | None = None,
          name: str = "") -> TrainResult:
  """Trains params from `init_fn` on `loss_fn`, resuming from `workdir/checkpoints[/name]`.

  Args:
    config: the experiment config (sections `train`, `optimizer`, key `seed`).
    workdir: the run's directory: a local path or any etils.epath path (gs://... on a cloud
      machine); checkpoints and the profile go under it.
    writer: a `lmsys.metrics.Writer`.
    init_fn: key -> params.
    loss_fn: (params, batch, rng) -> (loss, aux metrics).
    batch_fn: (step[, process_index=, process_count=]) -> batch (see `_make_put_batch`).
    eval_fn: params -> metrics, run every `train.eval_every` steps and at the end.
    name: a named sub-run: its checkpoints, metrics splits and progress carry the name.

  Returns:
    TrainResult with the final params (this host's copy), step, last train/eval metrics
    and steps/s (compilation, evaluation and checkpoint pauses excluded).

  Raises:
    NonFiniteLossError: the loss, a gradient or a parameter went NaN/inf.
    Interrupted: SIGTERM/SIGINT; a checkpoint of the step in flight was saved.
    lmsys.checkpoint.CheckpointSaveError: a checkpoint could not be written.
  """
  synced = _preemption_synced()
  with _stop_signals(synced) as received:
    setup = _build(config, workdir, init_fn, name, stop_requested=None if synced else lambda: bool(received))
    state = _restore_or_init(setup, init_fn)
    start = int(state["step"])
    # Rows written after that checkpoint (by a killed run) are written again: remove them;
    # TensorBoard hides the run's later events too (a named run has its own event directory).
    writer.rewind(lambda row: _stale_row(row, start, name), purge_step=start + 1, run=name)
    if start == 0 and jax.process_index() == 0:
      devices = jax.devices()
      print(f"{name + ': ' if name else ''}{len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), "
            f"{jax.process_count()} process(es)\n{parameter_overview(setup.abstract_state['params'])}",
            file=sys.stderr, flush=True)
    put_batch = _make_put_batch(config, batch_fn, setup.data_sharding)
    update = _jit_step(setup, make_train_step(loss_fn, setup.tx, setup.step_key,
                                              log_every=config.train.log_every, num_steps=config.train.num_steps))
    result = _loop(config, setup, writer, state, start, update, put_batch, init_fn, loss_fn, eval_fn, received,
                   synced)
    checkpoint.wait(setup.mngr)
    setup.mngr.close()
    writer.flush()
    return result


def _loop(config, setup: _Setup, writer, state, start, update, put_batch, init_fn, loss_fn, eval_fn,
          received, synced) -> TrainResult:
  """The train loop: step, log, evaluate, check, checkpoint; stop on a signal.

  Whether a step is saved is the checkpoint manager's decision (`should_save`, asked once a
  step). The stop is this process's signal, or with `synced` every host's preemption sync
  point, which JAX requires to be asked at every step by every host.
  """
  tc, name = config.train, setup.name
  num_steps = tc.num_steps
  # Plain ints: the loop reads them every step, and a ConfigDict lookup is not free.
  log_every, eval_every = int(tc.log_every), int(tc.eval_every)
  # Compiled now, with the step, so that its compilation stays out of the steps/s figure.
  params_finite = jax.jit(lambda params: finite_leaves(params).all()).lower(state["params"]).compile()

  def check_finite(state):
    """At a boundary, before any save: raise if the loss or a parameter went non-finite."""
    if int(state["nonfinite_step"]) < 0 and bool(params_finite(state["params"])):
      return
    checkpoint.wait(setup.mngr)
    last = setup.mngr.latest_step()
    found = _locate_nonfinite(setup, init_fn, loss_fn, put_batch, config, int(state["step"]))
    raise NonFiniteLossError(_nonfinite_message(setup, state, found, last))

  progress = Progress(num_steps, start, name, bool(get(config, "train.progress_bar", True)))
  profile_from, profile_to = _profile_window(config, start)
  profile_to = min(profile_to, num_steps)
  trace_dir = os.fspath(paths.as_path(writer.workdir) / "profile" / (name or "train"))
  train_metrics, eval_metrics = {}, {}
  timed_steps, t0, paused = 0, None, 0.0  # steps/s excludes eval and checkpoint pauses
  first_batch = put_batch(start) if start < num_steps else None
  if first_batch is not None:
    update = _compile(update, state, first_batch, writer, name, start)
  rate = float("nan")
  for step in range(start, num_steps):
    _profile(step, profile_from, profile_to, trace_dir, state)
    state, metrics = update(state, first_batch if step == start else put_batch(step))
    done = step + 1
    if t0 is None:  # exclude compilation from the throughput figure
      jax.block_until_ready(metrics)
      t0 = time.perf_counter()
    else:
      timed_steps += 1
      rate = timed_steps / (time.perf_counter() - t0 - paused)
    is_last = done == num_steps
    logged_loss = None
    if done % log_every == 0 or is_last:
      check_finite(state)
      train_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      writer.write(done, _write_split(name, "train"), train_metrics, steps_per_second=rate)
      logged_loss = train_metrics["loss"]
    progress.update(done, rate, logged_loss)
    if eval_fn is not None and (done % eval_every == 0 or is_last):
      check_finite(state)
      pause_start = time.perf_counter()
      eval_metrics = _evaluate(eval_fn, state)
      writer.write(done, _write_split(name, "eval"), eval_metrics)
      paused += time.perf_counter() - pause_start
    if setup.mngr.should_save(done):  # checkpoint_every, the last step, a stop (checkpoint.manager)
      check_finite(state)
      pause_start = time.perf_counter()
      checkpoint.save(setup.mngr, done, _saved(state), setup.meta)
      paused += time.perf_counter() - pause_start
    if setup.mngr.reached_preemption(done) if synced else received:
      # SIGTERM/SIGINT: the step in flight is done; save it (if not just saved) and stop
      check_finite(state)
      progress.close()
      _stop_on_signal(setup, state, done, received[0] if received else signal.SIGTERM, synced)
  _profile(num_steps, profile_from, profile_to, "", state)  # a trace that runs to the last step
  progress.close()
  if timed_steps:
    jax.block_until_ready(state)
  steps_per_second = timed_steps / (time.perf_counter() - t0 - paused) if timed_steps else float("nan")
  if start >= num_steps and eval_fn is not None:  # resumed a finished run: report, don't retrain
    eval_metrics = _evaluate(eval_fn, state)
  return TrainResult(params=_host_local(state["params"]), step=int(state["step"]), train_metrics=train_metrics,
                     eval_metrics=eval_metrics, steps_per_second=steps_per_second)
