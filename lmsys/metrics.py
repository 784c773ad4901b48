"""Metric writing: JSON lines (for notebooks), TensorBoard and optionally W&B, plus figures.

Every experiment writes through one `Writer`, so every workdir reads the same
way: `metrics.jsonl` has one object a line with `step`, `split` and values. The
workdir may be any etils.epath path (a local folder, or gs://... on a cloud
machine): the writer and `write_json`/`save_figure` reach it through epath.
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
from etils import epath

from lmsys import paths


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

  def __init__(self, workdir: epath.PathLike, tensorboard: bool = True, enabled: bool = True,
               hparams: dict | None = None, wandb: dict | None = None):
    """Opens the writers.

    Args:
      workdir: the run's directory: a local path or any etils.epath path (gs://...).
      tensorboard: write TensorBoard event files.
      enabled: False on non-primary hosts of a multi-host run: nothing is written.
      hparams: the flattened config, shown in TensorBoard's HParams tab (written at close).
      wandb: keyword arguments of `wandb.init` (project, mode, ...), or None for no W&B.
    """
    self.workdir = workdir
    self._root = paths.as_path(workdir)
    self._path = self._root / "metrics.jsonl"
    self._jsonl = None
    self._tb: dict[str, Any] = {}   # sub-run name ('' = the run) -> SummaryWriter
    self._tensorboard = tensorboard and enabled
    self._hparams = hparams
    self._last: dict[str, float] = {}
    self._wandb = None
    self._wandb_splits: set[str] = set()
    if not enabled:
      return
    self._root.mkdir(parents=True, exist_ok=True)
    _drop_cut_line(self._path)
    self._jsonl = self._path.open("a")
    if self._tensorboard:
      self._event_writer("")
    if wandb is not None:
      import wandb as wandb_lib  # pylint: disable=g-import-not-at-top
      run_id = hashlib.sha1(os.fspath(self._root).encode()).hexdigest()[:16]  # a resume continues the run
      # W&B keeps its files in a local folder: the workdir when it is local, else W&B's default.
      local_dir = os.fspath(self._root) if paths.is_local(self._root) else None
      self._wandb = wandb_lib.init(dir=local_dir, config=hparams, resume="allow", **{"id": run_id, **wandb})

  def _event_writer(self, run: str, purge_step: int | None = None):
    """The SummaryWriter of sub-run `run` ('' = the run itself), opened on first use."""
    if run not in self._tb or purge_step is not None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      if run in self._tb:
        self._tb[run].close()
      self._tb[run] = SummaryWriter(os.fspath(self._root / "tensorboard" / run) if run else
                                    os.fspath(self._root / "tensorboard"), purge_step=purge_step)
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
    path = self._path
    self._jsonl.flush()
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    kept = [line for line in lines if not drop(_row(line))]
    if len(kept) < len(lines):
      self._jsonl.close()
      _write_atomically(path, b"".join(line + b"\n" for line in kept))
      self._jsonl = path.open("a")
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
    directory = self._root / "figures"
    if not directory.is_dir():
      return
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
      if path.name.endswith(".png"):
        with path.open("rb") as f:
          image = matplotlib.image.imread(f, format="png")
        self._tb[""].add_image(f"figures/{path.name[:-4]}", image[..., :3], dataformats="HWC")

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


def _drop_cut_line(path: epath.Path) -> None:
  """Truncates a last line cut short by a kill (no final newline), so appends start clean."""
  if not path.exists():
    return
  content = path.read_bytes()
  if not content or content.endswith(b"\n"):
    return
  _write_atomically(path, content[:content.rfind(b"\n") + 1])


def _write_atomically(path: epath.Path, content: bytes) -> None:
  """Writes `content` to `path` through a temporary file renamed over it (synced first where local).

  A kill leaves the old file or the new one, never a mix. On an object store the rename is
  epath's (the new object replaces the old one whole).
  """
  tmp = path.parent / (path.name + ".tmp")
  with tmp.open("wb") as f:
    f.write(content)
    f.flush()
    if paths.is_local(tmp):
      os.fsync(f.fileno())
  tmp.replace(path)


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


def save_figure(fig, workdir: epath.PathLike, name: str) -> str:
  """Saves a matplotlib figure as `workdir/figures/<name>.png` and closes it.

  Args:
    fig: the figure.
    workdir: the run's directory (any etils.epath path).
    name: the file name without `.png`.

  Returns:
    The PNG's path.
  """
  plt = pyplot()
  path = paths.as_path(workdir) / "figures" / f"{name}.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
  plt.close(fig)
  return os.fspath(path)


def write_json(path: epath.PathLike, obj) -> None:
  """Atomic JSON write (numpy scalars/arrays converted), to a local path or any etils.epath path."""
  def default(o):
    if isinstance(o, np.ndarray):
      return o.tolist()
    if isinstance(o, (np.generic,)):
      return o.item()
    return str(o)
  text = json.dumps(obj, indent=2, default=default, ensure_ascii=False)
  _write_atomically(paths.as_path(path), text.encode("utf-8"))
