"""Metric writing: JSON lines (for notebooks), TensorBoard and optionally W&B, plus figures.

Every experiment writes through one `Writer`, so every workdir reads the same
way: `metrics.jsonl` has one object a line with `step`, `split` and values.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np


def _to_float(value):
  if isinstance(value, (bool, np.bool_)):
    return float(value)
  if isinstance(value, numbers.Number) or (hasattr(value, "shape") and np.ndim(value) == 0):
    v = float(value)
    return v if math.isfinite(v) else str(v)
  return value


class Writer:
  """Appends metrics to `workdir/metrics.jsonl`, TensorBoard event files and (optionally) W&B.

  TensorBoard: the run's own scalars, the config as hparams and every figure under
  `workdir/figures/` as an image go to `tensorboard/`; a named sub-run (a split
  `<name>/train`) gets its own event directory `tensorboard/<name>/`, so TensorBoard lists
  it as a run of its own. Weights & Biases (`log.wandb`; offline unless `log.wandb_mode`
  says otherwise) gets the same scalars, each split against its own step.
  """

  def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool = True,
               hparams: dict | None = None, wandb: dict | None = None):
    """Opens the writers.

    Args:
      workdir: the run's directory.
      tensorboard: write TensorBoard event files.
      enabled: False on non-primary hosts of a multi-host run: nothing is written.
      hparams: the flattened config, shown in TensorBoard's HParams tab (written at close).
      wandb: keyword arguments of `wandb.init` (project, mode, ...), or None for no W&B.
    """
    self.workdir = workdir
    self._jsonl = None
    self._tb: dict[str, Any] = {}   # sub-run name ('' = the run) -> SummaryWriter
    self._tensorboard = tensorboard and enabled
    self._hparams = hparams
    self._last: dict[str, float] = {}
    self._wandb = None
    self._wandb_splits: set[str] = set()
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    _drop_cut_line(path)
    self._jsonl = open(path, "a")
    if self._tensorboard:
      self._event_writer("")
    if wandb is not None:
      import wandb as wandb_lib  # pylint: disable=g-import-not-at-top
      run_id = hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]  # a resume continues the run
      self._wandb = wandb_lib.init(dir=workdir, config=hparams, resume="allow", **{"id": run_id, **wandb})

  def _event_writer(self, run: str, purge_step: int | None = None):
    """The SummaryWriter of sub-run `run` ('' = the run itself), opened on first use."""
    if run not in self._tb or purge_step is not None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      if run in self._tb:
        self._tb[run].close()
      self._tb[run] = SummaryWriter(os.path.join(self.workdir, "tensorboard", run), purge_step=purge_step)
    return self._tb[run]

  def write(self, step: int, split: str, metrics: dict | None = None, **more) -> None:
    """Appends one row `{"step", "split", **metrics, **more}`; scalars also go to TensorBoard/W&B."""
    if self._jsonl is None:
      return
    values = {k: _to_float(v) for k, v in {**(metrics or {}), **more}.items()}
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
    self._jsonl.flush()
    run, _, part = split.rpartition("/")
    scalars = {f"{part}/{k}": v for k, v in values.items() if isinstance(v, float)}
    self._last.update({f"{run}/{tag}" if run else tag: v for tag, v in scalars.items()})
    if self._tensorboard:
      writer = self._event_writer(run)
      for tag, v in scalars.items():
        writer.add_scalar(tag, v, int(step))
    if self._wandb is not None and scalars:
      if split not in self._wandb_splits:  # each split against its own step (sub-runs restart at 0)
        self._wandb.define_metric(f"{split}/step")
        self._wandb.define_metric(f"{split}/*", step_metric=f"{split}/step")
        self._wandb_splits.add(split)
      self._wandb.log({f"{split}/step": int(step),
                       **{f"{split}/{k}": v for k, v in values.items() if isinstance(v, float)}})

  def rewind(self, drop: Callable[[dict], bool], purge_step: int | None = None, run: str = "") -> int:
    """Removes the rows `drop` selects from metrics.jsonl (atomically); returns how many.

    For a resume (lmsys.trainer): rows written after the restored checkpoint are
    written again, so they are removed rather than duplicated. TensorBoard event
    files are append-only; with `purge_step`, TensorBoard hides every event of sub-run
    `run` at steps >= purge_step written before this point (tensorboardX's purge_step).
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
      if purge_step is not None and self._tensorboard:
        self._event_writer(run, purge_step=purge_step)
    return len(lines) - len(kept)

  def flush(self):
    """Flushes metrics.jsonl and the event files."""
    if self._jsonl is None:
      return
    self._jsonl.flush()
    for writer in self._tb.values():
      writer.flush()

  def close(self):
    """Writes the figures and hparams to TensorBoard, then closes every writer."""
    if self._jsonl is None:
      return
    self._jsonl.close()
    if self._tensorboard:
      self._write_figures()
      if self._hparams and self._last:  # a run that logged nothing (bad input found late) adds no hparams
        hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in self._hparams.items()}
        self._tb[""].add_hparams(hparams, dict(self._last), name="hparams")
    for writer in self._tb.values():
      writer.close()
    if self._wandb is not None:
      self._wandb.finish()

  def _write_figures(self):
    """Every PNG under workdir/figures/ as a TensorBoard image (tag figures/<name>)."""
    directory = os.path.join(self.workdir, "figures")
    if not os.path.isdir(directory):
      return
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    for name in sorted(os.listdir(directory)):
      if name.endswith(".png"):
        image = matplotlib.image.imread(os.path.join(directory, name))
        self._tb[""].add_image(f"figures/{name[:-4]}", image[..., :3], dataformats="HWC")

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def check_log_config(config) -> dict | None:
  """The `wandb.init` arguments the `log` section asks for, or None; checked before compute.

  Args:
    config: the experiment config (section `log`: wandb, wandb_project, wandb_mode).

  Returns:
    {'project', 'mode', 'name'} when `log.wandb` is true, else None.

  Raises:
    ConfigError: W&B asked for but not installed, or an unknown mode.
  """
  from lmsys.config import ConfigError, get  # pylint: disable=g-import-not-at-top
  if not get(config, "log.wandb", False):
    return None
  mode = get(config, "log.wandb_mode", "offline")
  if mode not in ("offline", "online", "disabled"):
    raise ConfigError(f"config key 'log.wandb_mode': expected offline, online or disabled, got {mode!r}")
  try:
    import wandb  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  except ImportError:
    raise ConfigError("config key 'log.wandb': Weights & Biases is not installed "
                      "(pip install -e '.[wandb]')") from None
  return {"project": get(config, "log.wandb_project", "lmsys"), "mode": mode}


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
