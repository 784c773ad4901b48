"""Metric writing: JSON lines (for notebooks) and TensorBoard, plus figures.

Every experiment writes through one `Writer`, so every workdir reads the same
way: `metrics.jsonl` has one object a line with `step`, `split` and values.
"""

from __future__ import annotations

import json
import math
import os
import numbers
from typing import Callable

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
    path = os.path.join(workdir, "metrics.jsonl")
    _drop_cut_line(path)
    self._jsonl = open(path, "a")
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

  def rewind(self, drop: Callable[[dict], bool], purge_step: int | None = None) -> int:
    """Removes the rows `drop` selects from metrics.jsonl (atomically); returns how many.

    For a resume (lmsys.trainer): rows written after the restored checkpoint are
    written again, so they are removed rather than duplicated. TensorBoard event
    files are append-only; with `purge_step`, TensorBoard hides every event at
    steps >= purge_step written before this point (tensorboardX's purge_step).
    """
    if self._jsonl is None:
      return 0
    path = self._jsonl.name
    self._jsonl.flush()
    with open(path, "rb") as f:
      lines = [line for line in f.read().split(b"\n") if line.strip()]
    kept = [line for line in lines if not drop(_row(line))]
    if len(kept) < len(lines):
      self._jsonl.close()
      tmp = path + ".tmp"
      with open(tmp, "wb") as f:
        f.write(b"".join(line + b"\n" for line in kept))
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
      self._jsonl = open(path, "a")
      if purge_step is not None and self._tb is not None:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        logdir = self._tb.logdir
        self._tb.close()
        self._tb = SummaryWriter(logdir, purge_step=purge_step)
    return len(lines) - len(kept)

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


def _row(line: bytes) -> dict:
  try:
    row = json.loads(line)
  except ValueError:
    return {}
  return row if isinstance(row, dict) else {}


def _drop_cut_line(path: str) -> None:
  """Truncates a last line cut short by a kill (no final newline), so appends start clean."""
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return
  with open(path, "rb+") as f:
    f.seek(-1, os.SEEK_END)
    if f.read(1) == b"\n":
      return
    f.seek(0)
    content = f.read()
    f.truncate(content.rfind(b"\n") + 1)


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
