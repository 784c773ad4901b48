"""Orbax checkpointing of the training state, shared by the trainer and analysis.

A checkpoint holds two items: `state` (params, optimizer state, step; saved
with StandardSave so it restores onto any device layout given abstract
targets) and `meta` (JSON: what the run was). Saves are atomic (orbax writes
to a temporary directory and renames), so a process killed mid-save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
      cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)


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


def restore_raw(directory: str, step: int | None = None):
  """Restores (state, meta) without a target: nested dicts of numpy arrays.

  Lets a notebook read parameters without rebuilding the model.
  """
  mngr = manager(directory, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {directory}")
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  state_dir = os.path.join(os.path.abspath(directory), str(step), "state")
  state = ocp.StandardCheckpointer().restore(state_dir)
  mngr.close()
  return state, meta, step
