"""Reading runs back, for notebooks: one workdir -> config, metrics, results, params.

  run = load_run("runs/mlp/20261124-101500")
  run.claims                        # the note's claims with verdicts (claims.json)
  run.provenance["git"]["commit"]   # where it came from (provenance.json)
  run.metrics.query("split == 'eval'").plot(x="step", y="accuracy")
  params = run.restore()            # latest checkpoint, no model code needed
  table = load_runs("runs/")        # one row per run: config fields + results
  table = load_runs("runs/sweep")   # a sweep (experiments/sweep.py): one row per trial + status
  aggregate(table, "results.digits.test_accuracy")   # mean and standard error over seeds
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import pandas as pd

from lmsys import checkpoint, layout
from lmsys import claims as claims_lib
from lmsys import metrics as metrics_lib
from lmsys import provenance as provenance_lib
from lmsys.config import flatten


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  metrics: pd.DataFrame
  results: dict
  provenance: dict | None = None   # provenance.json: commit, command, versions, inputs, times
  claims: list | None = None       # claims.json: the note's claims with verdicts (lmsys.claims)

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
  return Run(workdir, config, read_metrics(os.path.join(workdir, "metrics.jsonl")), results,
             provenance=provenance_lib.read(workdir), claims=claims_lib.read(workdir))


def load_runs(directory: str) -> pd.DataFrame:
  """One row per workdir under `directory`: `config.*` fields, `results.*` values, `status`.

  Over a sweep's directory (it holds sweep.json, written by experiments/sweep.py): one
  row per trial in the sweep's order, trials not started included, with `trial`, the
  swept keys as columns (`model.activation`, `seed`) and `error` (a failed trial's last
  line). `status`: done (results.json), failed (the sweep recorded an error),
  incomplete (started: running, or interrupted) or pending (not started).
  """
  if os.path.exists(os.path.join(directory, layout.SWEEP_FILE)):
    return _load_sweep(directory)
  rows = []
  for root, dirs, files in os.walk(directory):
    if "config.json" in files:
      rows.append({"workdir": root, "status": _status(root), **_run_columns(load_run(root))})
      dirs[:] = [d for d in dirs if d not in ("checkpoints", "tensorboard", "figures")]
  return pd.DataFrame(rows)


def _run_columns(run: Run) -> dict:
  row = {f"config.{k}": _scalar(v) for k, v in flatten(run.config.to_dict()).items()}
  row.update({f"results.{k}": v for k, v in flatten(run.results).items()})
  return row


def _status(workdir: str) -> str:
  if os.path.exists(os.path.join(workdir, "results.json")):
    return "done"
  if os.path.exists(os.path.join(workdir, layout.ERROR_FILE)):
    return "failed"
  return "incomplete" if os.path.exists(os.path.join(workdir, "config.json")) else "pending"


def _load_sweep(directory: str) -> pd.DataFrame:
  with open(os.path.join(directory, layout.SWEEP_FILE)) as f:
    trials = json.load(f)["trials"]
  rows = []
  for trial in trials:
    workdir = os.path.join(directory, trial["name"])
    row = {"trial": trial["name"], **{k: _scalar(v) for k, v in trial["overrides"].items()},
           "status": _status(workdir)}
    if row["status"] == "failed":
      with open(os.path.join(workdir, layout.ERROR_FILE), errors="replace") as f:
        row["error"] = ([line for line in f.read().splitlines() if line.strip()] or [""])[-1]
    row["workdir"] = workdir
    if os.path.exists(os.path.join(workdir, "config.json")):
      row.update(_run_columns(load_run(workdir)))
    rows.append(row)
  return pd.DataFrame(rows)


def swept_keys(table: pd.DataFrame) -> list[str]:
  """The swept-key columns of a load_runs table of a sweep (neither config.*, results.* nor bookkeeping)."""
  return [c for c in table.columns if c not in ("trial", "status", "error", "workdir")
          and not c.startswith(("config.", "results."))]


def aggregate(table: pd.DataFrame, metric: str, by: list[str] | None = None, over: str = "seed") -> pd.DataFrame:
  """Mean, standard error (ddof 1) and count of `metric` per group, over the `over` key.

  `by` defaults to the swept keys except `over`; trials not done are left out. A group
  with one trial has no standard error (NaN): a single seed shows no spread.
  """
  by = [k for k in swept_keys(table) if k != over] if by is None else list(by)
  done = table[table["status"] == "done"] if "status" in table else table
  done = done.assign(**{metric: pd.to_numeric(done[metric], errors="coerce")})  # None (not measured) -> NaN
  if not by:
    stats = done[metric].agg(["mean", "sem", "count"]).to_frame().T.reset_index(drop=True)
  else:
    stats = done.groupby(by, sort=False)[metric].agg(["mean", "sem", "count"]).reset_index()
  return stats


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
