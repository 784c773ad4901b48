"""Orbax checkpointing of the training state, shared by the trainer and analysis.

A checkpoint holds two items: `state` (params, optimizer state, step; saved
with StandardSave so it restores onto any device layout given abstract
targets) and `meta` (JSON: what the run was). Saves are atomic (orbax writes
to a temporary directory and renames), so a process killed mid-save leaves
the previous checkpoint intact.

orbax decides, through its public API only: its save-decision policies say when a save
happens (every `save_every` steps, at the last step, at a multi-host preemption sync point,
and once the trainer asks, on a stop signal), `preservation_policy=LatestN` says which
checkpoints stay, and its step helpers (`ocp.step`) tell committed checkpoints from
temporary ones. Directories are `etils.epath` paths, local or `gs://...` (lmsys.paths).

Reliability (docs/reliability.md): `restore_latest` falls back to the previous
checkpoint when the latest cannot be read, and moves the unreadable ones aside
to `<dir>/corrupt/<step>-<time>` (never deleted, and no longer listed by
orbax); `save`/`wait` turn a failed write (e.g. a full disk) into one
`CheckpointSaveError` naming the step, the cause and the intact checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import re
import sys
import time
from collections.abc import Callable

import jax
import orbax.checkpoint as ocp
from etils import epath

from lmsys import paths

_policies = ocp.checkpoint_managers


class CheckpointError(RuntimeError):
  """No checkpoint under a directory could be read; the message names each step and its error."""


class CheckpointSaveError(OSError):
  """A checkpoint could not be written; the message names the step and the checkpoint still intact."""


@dataclasses.dataclass
class OnRequest(_policies.SaveDecisionPolicy):
  """An orbax save-decision policy: save whenever `requested()` is true.

  The trainer's stop signals on one host: once SIGTERM/SIGINT is recorded, the step in
  flight is saved, whatever its number. (Across hosts, orbax's PreemptionCheckpointingPolicy
  takes its place: all hosts must save the same step.)
  """
  requested: Callable[[], bool]

  def should_save(self, step, previous_steps, *, context) -> bool:
    del step, previous_steps, context
    return bool(self.requested())


def manager(directory: epath.PathLike, keep: int = 3, *, save_every: int | None = None,
            final_step: int | None = None, stop_requested: Callable[[], bool] | None = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  """The checkpoint manager of a run: which steps are saved and which are kept is orbax's decision.

  `mngr.should_save(step)` (and every `save`) is true at a multiple of `save_every`, at
  `final_step`, at a multi-host preemption sync point (`mngr.reached_preemption(step)`: a
  SIGTERM on any host, lmsys.trainer) and, once `stop_requested()` is true, at any step
  not saved yet. The newest `keep` checkpoints are kept.

  Args:
    directory: where the checkpoints go (a local path or any etils.epath path, e.g. gs://...).
    keep: how many of the newest checkpoints to keep.
    save_every: save at multiples of this step (None: not at a cadence).
    final_step: save at this step (the run's last).
    stop_requested: a callable that is true once the run must stop (saves the step in flight).
    read_only: for reading (analysis, notebooks): nothing is created, saved or deleted.

  Returns:
    A manager of the items `state` (StandardSave) and `meta` (JSON).
  """
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  else:
    policies = [_policies.PreemptionCheckpointingPolicy()]
    if save_every:
      policies.append(_policies.FixedIntervalPolicy(save_every))
    if final_step is not None:
      policies.append(_policies.SpecificStepsPolicy((final_step,)))
    if stop_requested is not None:
      policies.append(OnRequest(stop_requested))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=_policies.AnySavePolicy(policies),
        preservation_policy=_policies.LatestN(n=keep), create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(
      paths.as_path(directory), options=options,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> bool:
  """Starts an (async) save of `state` at `step` if the manager's policies allow it.

  A save still in flight that fails surfaces here or in `wait` (orbax raises a
  background error at the next call); either way the uncommitted save stays a
  temporary directory and the previous checkpoint is untouched.

  Args:
    mngr: the run's manager (`manager`).
    step: the training step the state is at.
    state: the pytree to save (params, optimizer state, step).
    meta: JSON-serialisable facts about the run, saved beside it.

  Returns:
    Whether a save started: False when `mngr.should_save(step)` is false (e.g. `step` is
    saved already).

  Raises:
    CheckpointSaveError: this save or the one before it failed; the manager is closed.
  """
  try:
    return mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
  except Exception as e:  # pylint: disable=broad-except
    error = _save_error(mngr, e, step)
  raise error


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits for the save in flight; a failed write is a CheckpointSaveError (the manager is then closed).

  Args:
    mngr: the run's manager (`manager`).
  """
  try:
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    error = _save_error(mngr, e)
  else:
    return
  raise error


def _save_error(mngr, error: BaseException, step: int | None = None) -> CheckpointSaveError:
  """One error naming the step that failed and the newest committed checkpoint.

  An async save that failed in the background surfaces at the next call, so
  the failed step is the uncommitted (temporary) one, when there is one (orbax's
  `ocp.step.all_temporary_paths` finds it, whatever its temporary naming). The
  caller raises it outside its `except` block, so it carries no link to orbax's
  exception (whose frames hold orbax's failed futures: once the error is dropped
  they can be garbage-collected before the run reports it).
  """
  directory = mngr.directory
  try:
    pending = sorted(ocp.step.step_from_checkpoint_name(p.get().name)
                     for p in ocp.step.all_temporary_paths(directory))
  except (OSError, ValueError):  # the directory itself is what failed
    pending = []
  failed = pending[-1] if pending else step
  try:
    intact = [s for s in checkpoint_steps(directory) if s != failed]
  except OSError:
    intact = []
  try:  # the manager is unusable now; stop its threads so the exit is clean
    mngr.close()
  except Exception:  # pylint: disable=broad-except
    pass
  return CheckpointSaveError(f"checkpoint save of step {failed} failed in {directory}: {_root_cause(error)}; "
                             f"last intact checkpoint: {f'step {intact[-1]}' if intact else 'none'}")


def settle_failed_saves(timeout: float = 10.0) -> bool:
  """Waits until the asyncio work of failed saves is finished and garbage-collected.

  A failed orbax save closes its event loop while sibling writes are still in
  tensorstore's hands; each reports itself on stderr when it completes (asyncio's
  "Event loop is closed") or is collected ("exception was never retrieved"),
  possibly after the run's own error line. Called once the CheckpointSaveError is
  dropped and before it is reported, this lets all of that happen first: it
  collects garbage until no future of a closed event loop is left alive. A finished
  future's exception is the failure this run reports in its own error line, so it is
  marked retrieved (`Future.exception()`) and asyncio does not report it again.

  Args:
    timeout: seconds to wait at most.

  Returns:
    True when none is left; False at the timeout.
  """
  deadline = time.monotonic() + timeout
  while True:
    orphans = [o for o in gc.get_objects() if isinstance(o, asyncio.Future) and o.get_loop().is_closed()]
    for future in orphans:  # their failure is the one this run reports: mark it retrieved (asyncio's API)
      if future.done() and not future.cancelled():
        future.exception()
    del orphans
    gc.collect()
    if not any(isinstance(o, asyncio.Future) and o.get_loop().is_closed() for o in gc.get_objects()):
      return True
    if time.monotonic() > deadline:
      return False
    time.sleep(0.01)


def _root_cause(error: BaseException) -> str:
  """The root cause in one line: orbax wraps tensorstore's precise error in a vaguer one.

  A tensorstore write error names the OS error deep in a long text
  (`Failed writing: "FILE": ... [os_error_code='28']`); it is put first, as
  `OSError: [Errno 28] No space left on device (writing FILE)`.
  """
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).strip()
  code = re.search(r"os_error_code='(\d+)'", text)
  if code:
    written = re.search(r'(?:Failed writing|Error writing local file): "([^"]+)"', text)
    where = f" (writing {written.group(1)})" if written else ""
    return f"OSError: [Errno {code.group(1)}] {os.strerror(int(code.group(1)))}{where}"
  line = text.splitlines()[0] if text else ""
  return f"{type(error).__name__}: {line[:300]}".strip()


def abstract_like(tree, shardings=None):
  """ShapeDtypeStructs (with shardings) as restore targets for orbax."""
  if shardings is None:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state):
  """Restores (state, meta) at `step` onto the layout described by `abstract_state`."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(state, meta, step) of the newest readable checkpoint, or None if there is none.

  An unreadable checkpoint (truncated or missing files, any read error) is
  skipped for the previous one. Those that failed while an older one read fine
  are moved aside to `corrupt/` (kept, but no longer listed), each with a
  one-line warning naming its step, its error and where it went. If none
  reads, nothing is moved (the cause may be systematic, e.g. a changed model)
  and a CheckpointError names every step and its error.
  """
  failed = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      state, meta = restore(mngr, step, abstract_state)
    except Exception as e:  # pylint: disable=broad-except  (tensorstore, orbax, OSError, ValueError...)
      failed.append((step, _root_cause(e)))
      continue
    for bad, error in failed:
      moved = move_aside(str(mngr.directory), bad)
      print(f"warning: checkpoint step {bad} in {mngr.directory} is unreadable ({error}); moved to {moved}; "
            f"resuming from step {step}", file=sys.stderr, flush=True)
    if failed:
      mngr.reload()
    return state, meta, step
  if failed:
    mngr.close()  # unusable for this run; stops orbax's threads so the exit is clean
    raise CheckpointError(f"no readable checkpoint in {mngr.directory}: "
                          + "; ".join(f"step {s}: {e}" for s, e in failed))
  return None


def move_aside(directory: epath.PathLike, step: int) -> str:
  """Moves checkpoint `step` to `directory/corrupt/<step>-<time>` (process 0 only); returns the new path.

  The step's directory is orbax's (`ocp.step.build_step_path`); the move is a rename (on an
  object store, epath's rename: a copy, then a delete).
  """
  root = paths.as_path(directory)
  target = root / "corrupt" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
  if target.exists():  # the same step moved twice within a second
    target = target.parent / f"{target.name}-{len(list(target.parent.iterdir()))}"
  if jax.process_index() == 0:
    target.parent.mkdir(parents=True, exist_ok=True)
    ocp.step.build_step_path(root, ocp.step.standard_name_format(), step).rename(target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"lmsys_move_aside_{step}")
  return os.fspath(target)


def checkpoint_steps(directory: epath.PathLike) -> list[int]:
  """Committed checkpoint steps under `directory`, oldest first (orbax's `ocp.step.checkpoint_steps`:
  temporary and partial saves excluded).

  Args:
    directory: a checkpoint directory, local or any etils.epath path; it need not exist.

  Returns:
    The steps, sorted.
  """
  return sorted(ocp.step.checkpoint_steps(paths.as_path(directory)))


def restore_raw(directory: epath.PathLike, step: int | None = None):
  """Restores (state, meta, step) without a target: nested dicts of numpy arrays.

  Lets a notebook read parameters without rebuilding the model. Read-only:
  with `step=None` an unreadable latest checkpoint costs a warning and the
  previous one is read (nothing is moved: a trainer may be running).

  Args:
    directory: the checkpoint directory (local or any etils.epath path).
    step: the step to read; None: the newest readable one.

  Returns:
    (state, meta, step), the state as host numpy arrays.

  Raises:
    FileNotFoundError: no checkpoint (or none at `step`).
    CheckpointError: with `step=None`, none could be read.
  """
  mngr = manager(directory, read_only=True)
  try:
    steps = sorted(mngr.all_steps())
    if not steps:
      raise FileNotFoundError(f"no checkpoint under {directory}")
    if step is not None and step not in steps:
      raise FileNotFoundError(f"no checkpoint for step {step} under {directory} (have: {steps})")
    failed = []
    for candidate in ([step] if step is not None else steps[::-1]):
      try:
        return (*_read_raw(mngr, candidate), candidate)
      except Exception as e:  # pylint: disable=broad-except
        if step is not None:
          raise
        failed.append((candidate, _root_cause(e)))
        print(f"warning: checkpoint step {candidate} in {directory} is unreadable ({failed[-1][1]}); "
              f"trying the previous one", file=sys.stderr, flush=True)
    raise CheckpointError(f"no readable checkpoint in {directory}: "
                          + "; ".join(f"step {s}: {e}" for s, e in failed))
  finally:
    mngr.close()


def _read_raw(mngr: ocp.CheckpointManager, step: int):
  """(state, meta) of `step` onto this process's first device, whatever devices saved it.

  An 8-device or multi-host run read in a 1-device notebook: the target is built from the
  saved array metadata (`mngr.item_metadata`), then copied to host numpy.
  """
  metadata = mngr.item_metadata(step).state
  if metadata is None:
    raise FileNotFoundError(f"no state metadata for step {step} in {mngr.directory}")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  if restored.meta is None:
    raise FileNotFoundError(f"no meta item for step {step} in {mngr.directory}")
  return jax.device_get(restored.state), restored.meta
