"""Metric writing: JSON lines (for notebooks) and TensorBoard, plus figures.

Every experiment writes through one `Writer`, so every workdir reads the same
way: `metrics.jsonl` has one object a line with `step`, `split` and values.
"""

from __future__ import annotations

import json
import math
import os
import numbers

import numpy as np


def _to_float(value):
  if isinstance(value, (bool, np.bool_)):
    return float(value)
  if isinstance(value, numbers.Number) or (hasattr(value, "shape") and np.ndim(value) == 0):
    v = float(value)
    return v if math.isfinite(v) else str(v)
  return value


class Writer:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool = True):
    """`enabled=False` (non-primary hosts of a multi-host run) writes nothing."""
    self.workdir = workdir
    self._jsonl = self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: dict | None = None, **more) -> None:
    if self._jsonl is None:
      return
    values = {k: _to_float(v) for k, v in {**(metrics or {}), **more}.items()}
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in values.items():
        if isinstance(v, float):
          self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def flush(self):
    if self._jsonl is None:
      return
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._jsonl is None:
      return
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def pyplot():
  """matplotlib.pyplot, with the file-only Agg backend chosen here and nowhere else.

  Experiments run on machines with no display; a notebook that has already
  imported pyplot keeps its own (inline) backend.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, workdir: str, name: str) -> str:
  """Saves a matplotlib figure as `workdir/figures/<name>.png` and closes it."""
  plt = pyplot()
  path = os.path.join(workdir, "figures", f"{name}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def write_json(path: str, obj) -> None:
  """Atomic JSON write (numpy scalars/arrays converted)."""
  def default(o):
    if isinstance(o, np.ndarray):
      return o.tolist()
    if isinstance(o, (np.generic,)):
      return o.item()
    return str(o)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=default, ensure_ascii=False)
  os.replace(tmp, path)
