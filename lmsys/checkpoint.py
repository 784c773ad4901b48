"""Orbax checkpointing of the training state, shared by the trainer and analysis.

A checkpoint holds two items: `state` (params, optimizer state, step; saved
with StandardSave so it restores onto any device layout given abstract
targets) and `meta` (JSON: what the run was). Saves are atomic (orbax writes
to a temporary directory and renames), so a process killed mid-save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
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


def checkpoint_steps(directory: str) -> list[int]:
  """Committed checkpoint steps under `directory` (temporary/partial saves excluded)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and os.path.isdir(os.path.join(directory, d, "state")))


def restore_raw(directory: str, step: int | None = None):
  """Restores (state, meta, step) without a target: nested dicts of numpy arrays.

  Lets a notebook read parameters without rebuilding the model.
  """
  steps = checkpoint_steps(directory)
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {directory}")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} under {directory} (have: {steps})")
  path = os.path.join(os.path.abspath(directory), str(step))
  with open(os.path.join(path, "meta", "metadata")) as f:
    meta = json.load(f)
  state = ocp.StandardCheckpointer().restore(os.path.join(path, "state"))
  return state, meta, step
