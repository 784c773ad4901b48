"""Reading runs back, for notebooks: one workdir -> config, metrics, results, params.

  run = load_run("runs/mlp/20261124-101500")
  run.metrics.query("split == 'eval'").plot(x="step", y="accuracy")
  params = run.restore()            # latest checkpoint, no model code needed
  table = load_runs("runs/")        # one row per run: config fields + results
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import pandas as pd

from lmsys import checkpoint
from lmsys import metrics as metrics_lib
from lmsys.config import flatten


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  metrics: pd.DataFrame
  results: dict

  def checkpoint_dir(self, name: str = "") -> str:
    return os.path.join(self.workdir, "checkpoints", name)

  def checkpoint_steps(self, name: str = "") -> list[int]:
    return checkpoint.checkpoint_steps(self.checkpoint_dir(name))

  def restore(self, step: int | None = None, name: str = ""):
    """The parameters at `step` (latest by default) as nested dicts of arrays."""
    state, _, _ = checkpoint.restore_raw(self.checkpoint_dir(name), step)
    return state["params"]

  def restore_state(self, step: int | None = None, name: str = ""):
    """(full train state, checkpoint meta, step)."""
    return checkpoint.restore_raw(self.checkpoint_dir(name), step)


def read_metrics(path: str) -> pd.DataFrame:
  if not os.path.exists(path):
    return pd.DataFrame(columns=["step", "split"])
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: skip it, keep the rest
          continue
  return pd.DataFrame(rows)


def load_run(workdir: str) -> Run:
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"not an lmsys workdir (no config.json): {workdir}")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  results = {}
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  return Run(workdir, config, read_metrics(os.path.join(workdir, "metrics.jsonl")), results)


def load_runs(directory: str) -> pd.DataFrame:
  """One row per workdir under `directory`: `config.*` fields and `results.*` values."""
  rows = []
  for root, dirs, files in os.walk(directory):
    if "config.json" in files:
      run = load_run(root)
      row = {"workdir": root}
      row.update({f"config.{k}": _scalar(v) for k, v in flatten(run.config.to_dict()).items()})
      row.update({f"results.{k}": v for k, v in flatten(run.results).items()})
      rows.append(row)
      dirs[:] = [d for d in dirs if d not in ("checkpoints", "tensorboard", "figures")]
  return pd.DataFrame(rows)


def _scalar(value):
  return tuple(value) if isinstance(value, list) else value


def plot_curves(metrics: pd.DataFrame, names=("loss", "accuracy"), title: str = ""):
  """One panel per metric name, one line per split: the usual training figure."""
  plt = metrics_lib.pyplot()
  names = [n for n in names if n in metrics.columns]
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.2), squeeze=False)
  for ax, metric in zip(axes[0], names):
    for split, frame in metrics.dropna(subset=[metric]).groupby("split"):
      ax.plot(frame["step"], frame[metric], label=split)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig
