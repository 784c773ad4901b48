"""Orbax checkpointing of the training state, shared by the trainer and analysis.

A checkpoint holds two items: `state` (params, optimizer state, step; saved
with StandardSave so it restores onto any device layout given abstract
targets) and `meta` (JSON: what the run was). Saves are atomic (orbax writes
to a temporary directory and renames), so a process killed mid-save leaves
the previous checkpoint intact.

Reliability (docs/reliability.md): `restore_latest` falls back to the previous
checkpoint when the latest cannot be read, and moves the unreadable ones aside
to `<dir>/corrupt/<step>-<time>` (never deleted, and no longer listed by
orbax); `save`/`wait` turn a failed write (e.g. a full disk) into one
`CheckpointSaveError` naming the step, the cause and the intact checkpoint.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No checkpoint under a directory could be read; the message names each step and its error."""


class CheckpointSaveError(OSError):
  """A checkpoint could not be written; the message names the step and the checkpoint still intact."""


def manager(directory: str, max_to_keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  """Starts an (async) save of `state` at `step`; a failed write is a CheckpointSaveError.

  A save still in flight that fails surfaces here or in `wait` (orbax raises a
  background error at the next call); either way the uncommitted save stays a
  temporary directory and the previous checkpoint is untouched.

  Args:
    mngr: the run's manager (`manager`).
    step: the training step the state is at.
    state: the pytree to save (params, optimizer state, step).
    meta: JSON-serialisable facts about the run, saved beside it.

  Raises:
    CheckpointSaveError: this save or the one before it failed; the manager is closed.
  """
  try:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
  except Exception as e:  # pylint: disable=broad-except
    error = _save_error(mngr, e, step)
  else:
    return
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
  the failed step is the uncommitted (temporary) one, when there is one. The
  caller raises it outside its `except` block, so it carries no link to orbax's
  exception (whose frames hold orbax's failed futures: once the error is dropped
  they can be garbage-collected before the run reports it).
  """
  directory = str(mngr.directory)
  try:
    names = os.listdir(directory)
  except OSError:  # the directory itself is what failed
    names = []
  pending = sorted(int(d.split(".", 1)[0]) for d in names
                   if ".orbax-checkpoint-tmp" in d and d.split(".", 1)[0].isdigit())
  failed = pending[-1] if pending else step
  intact = [s for s in checkpoint_steps(directory) if s != failed]
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
  collects garbage until no future of a closed event loop is left alive.

  Args:
    timeout: seconds to wait at most.

  Returns:
    True when none is left; False at the timeout.
  """
  deadline = time.monotonic() + timeout
  while True:
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


def move_aside(directory: str, step: int) -> str:
  """Moves checkpoint `step` to `directory/corrupt/<step>-<time>` (process 0 only); returns the new path."""
  target = os.path.join(os.path.abspath(directory), "corrupt", f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  if os.path.exists(target):  # the same step moved twice within a second
    target += f"-{len(os.listdir(os.path.dirname(target)))}"
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(os.path.join(os.path.abspath(directory), str(step)), target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"lmsys_move_aside_{step}")
  return target


def checkpoint_steps(directory: str) -> list[int]:
  """Committed checkpoint steps under `directory` (temporary/partial saves excluded)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and os.path.isdir(os.path.join(directory, d, "state")))


def restore_raw(directory: str, step: int | None = None):
  """Restores (state, meta, step) without a target: nested dicts of numpy arrays.

  Lets a notebook read parameters without rebuilding the model. Read-only:
  with `step=None` an unreadable latest checkpoint costs a warning and the
  previous one is read (nothing is moved: a trainer may be running).
  """
  steps = checkpoint_steps(directory)
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {directory}")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} under {directory} (have: {steps})")
  failed = []
  for candidate in ([step] if step is not None else steps[::-1]):
    try:
      return (*_read_raw(os.path.join(os.path.abspath(directory), str(candidate))), candidate)
    except Exception as e:  # pylint: disable=broad-except
      if step is not None:
        raise
      failed.append((candidate, _root_cause(e)))
      print(f"warning: checkpoint step {candidate} in {directory} is unreadable ({failed[-1][1]}); "
            f"trying the previous one", file=sys.stderr, flush=True)
  raise CheckpointError(f"no readable checkpoint in {directory}: "
                        + "; ".join(f"step {s}: {e}" for s, e in failed))


def _read_raw(path: str):
  with open(os.path.join(path, "meta", "metadata")) as f:
    meta = json.load(f)
  # Onto this process's first device, whatever devices saved it (an 8-device or multi-host run
  # read in a 1-device notebook), then to host numpy.
  checkpointer = ocp.StandardCheckpointer()
  state_path = os.path.join(path, "state")
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(state_path).item_metadata)
  return jax.device_get(checkpointer.restore(state_path, target)), meta
