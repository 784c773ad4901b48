"""Sweeps: a config's `get_sweep(arg)` lists trials, each a dict of config overrides.

  def get_sweep(arg=None):               # in configs/X.py, next to get_config
    return sweep.product({"model.activation": ["relu", "squareplus"], "seed": [0, 1, 2]})

`product` and `zipped` take dicts ({dotted key: list of values}) or lists of
trials and compose: `product(zipped({"a": [1, 2], "b": [3, 4]}), {"seed": [0, 1]})`;
lists of trials concatenate with `+`. A trial's name is read from its values
(`activation=relu,seed=1`), so its workdir says what it ran. `validate` checks
every trial against the config with ml_collections' own type rules before any
trial starts; `override_flags` turns a trial into the `--config.KEY=VALUE`
flags `experiments/run.py` parses, so a trial is applied exactly as a
command-line override. `experiments/sweep.py` runs the trials; this module
imports no jax (planning a sweep stays cheap).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess

from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.layout import ERROR_FILE, LOG_FILE, SUMMARY_FILE, SWEEP_FILE  # noqa: F401  (sweep.X)

_MAX_NAME = 120


# -- Building trials -------------------------------------------------------------

def _values(key, values) -> list:
  if not isinstance(key, str) or not key:
    raise ConfigError(f"sweep: keys are dotted config keys (e.g. 'model.activation'), got {key!r}")
  if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)) or not values:
    raise ConfigError(f"sweep key '{key}': expected a non-empty list of values, got {values!r}")
  return list(values)


def _trials(part, combine) -> list[dict]:
  """A dict {key: values} combined by `combine`, or a list of trials as given."""
  if isinstance(part, dict):
    axes = [[{key: v} for v in _values(key, values)] for key, values in part.items()]
    if not axes:
      raise ConfigError("sweep: an empty dict has no trials")
    return combine(*axes)
  if isinstance(part, (list, tuple)) and all(isinstance(t, dict) for t in part):
    return [dict(t) for t in part]
  raise ConfigError(f"sweep: expected a dict {{key: values}} or a list of trials, got {part!r}")


def _merge(trials) -> dict:
  merged = {}
  for trial in trials:
    for key, value in trial.items():
      if key in merged:
        raise ConfigError(f"sweep key '{key}' is set twice in one trial (by two parts of a product or zip)")
      merged[key] = value
  return merged


def product(*parts) -> list[dict]:
  """Every combination of the parts' trials (a dict's keys vary independently)."""
  lists = [_trials(part, product) for part in parts]
  return [_merge(combo) for combo in itertools.product(*lists)]


def zipped(*parts) -> list[dict]:
  """The parts' trials side by side (a dict's keys vary together); all equally long."""
  lists = [_trials(part, zipped) for part in parts]
  if len({len(trials) for trials in lists}) > 1:
    lengths = ", ".join(f"{sorted({k for t in trials for k in t})}: {len(trials)}" for trials in lists)
    raise ConfigError(f"sweep: zipped parts differ in length ({lengths})")
  return [_merge(row) for row in zip(*lists)]


# -- Names -------------------------------------------------------------------------

def format_value(value) -> str:
  """A value as it reads in a trial name: 0.001 -> 0.001, (1, 5) -> 1-5, True -> true."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (list, tuple)):
    return "-".join(format_value(v) for v in value) or "none"
  if value is None:
    return "none"
  return str(value)


def _short_keys(keys) -> dict[str, str]:
  """model.activation -> activation, unless two swept keys end the same way."""
  last = {}
  for key in keys:
    last.setdefault(key.rsplit(".", 1)[-1], []).append(key)
  return {key: (key.rsplit(".", 1)[-1] if len(last[key.rsplit(".", 1)[-1]]) == 1 else key) for key in keys}


def trial_names(trials: list[dict]) -> list[str]:
  """Unique file-name-safe names from the swept values, e.g. 'activation=relu,seed=1'."""
  short = _short_keys(sorted({k for t in trials for k in t}))
  names, seen = [], {}
  for trial in trials:
    name = ",".join(f"{short[k]}={format_value(v)}" for k, v in trial.items()) or "default"
    name = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", name)
    if len(name) > _MAX_NAME:  # file names are limited; keep the start readable
      name = name[:_MAX_NAME - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    count = seen[name] = seen.get(name, 0) + 1
    names.append(name if count == 1 else f"{name}~{count}")  # distinct values, same text (0.001 vs 0.0010001)
  return names


# -- Checking and applying -------------------------------------------------------

def apply(config, trial: dict):
  """A copy of `config` with the trial's overrides, set by ml_collections' type rules."""
  config = config.copy_and_resolve_references()
  for key, value in trial.items():
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        raise ConfigError(f"sweep key '{key}' is not a config key ('{'.'.join(parts[:i + 1])}' does not exist)")
      if i < len(parts) - 1:
        node = node[part]
    old = node[parts[-1]]
    if hasattr(old, "keys"):
      raise ConfigError(f"sweep key '{key}' is a config section; sweep its fields instead")
    if isinstance(value, bool) != isinstance(old, bool) and old is not None:
      raise ConfigError(f"sweep key '{key}': value {value!r} has the wrong type "
                        f"({type(value).__name__}; the config's value is {old!r})")
    try:
      setattr(node, parts[-1], value)
    except (TypeError, ValueError):
      raise ConfigError(f"sweep key '{key}': value {value!r} has the wrong type "
                        f"({type(value).__name__}; the config's value is {old!r})") from None
  return config


def validate(config, trials, source: str = "the sweep") -> list[str]:
  """Checks every trial against `config` before any runs; returns the trial names."""
  if not isinstance(trials, (list, tuple)) or not trials:
    raise ConfigError(f"{source}: the sweep is empty (get_sweep returned {trials!r})")
  for trial in trials:
    if not isinstance(trial, dict):
      raise ConfigError(f"{source}: a trial must be a dict of config overrides, got {trial!r}")
    apply(config, trial)
  names = trial_names(list(trials))
  for name, trial in zip(names, trials):
    twin = next((t for t in trials if t is not trial and t == trial), None)
    if twin is not None:
      raise ConfigError(f"{source}: trial {name} appears twice")
  return names


def cli_value(value) -> str:
  """A value as `--config.KEY=VALUE` text that ml_collections' flag parsers read back."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, str):
    return value
  if isinstance(value, list):
    value = tuple(value)
  return repr(value)


def override_flags(trial: dict) -> list[str]:
  return [f"--config.{key}={cli_value(value)}" for key, value in trial.items()]


def load_sweep(path: str, arg: str | None = None) -> list[dict]:
  """Imports the config file and calls its `get_sweep(arg)` (usable from notebooks)."""
  if not callable(getattr(config_lib.load_config_module(path), "get_sweep", None)):
    raise ConfigError(f"{path} defines no get_sweep(arg): nothing to sweep")
  return config_lib.call_config_function(path, "get_sweep", arg)


# -- Running one trial (local subprocess or a submitit task) ---------------------

def tail(text: str, lines: int = 40) -> str:
  return "\n".join(text.rstrip().splitlines()[-lines:])


def run_command(command: list[str], cwd: str, log_path: str, env: dict | None = None) -> dict:
  """Runs one trial's command, its output to `log_path`; {'returncode', 'error'}."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "w") as log:
    proc = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                          stderr=subprocess.STDOUT, text=True, check=False)
  with open(log_path, errors="replace") as f:
    output = f.read()
  return {"returncode": proc.returncode, "error": "" if proc.returncode == 0 else tail(output)}


def distributed_env(coordinator_host: str, num_processes: int, process_id: int, job_id: str) -> dict:
  """The variables experiments/run.py reads to join the job's processes (jax.distributed)."""
  if num_processes <= 1:
    return {}
  port = 20000 + int(hashlib.sha1(job_id.encode()).hexdigest(), 16) % 20000  # same on every task
  return {"LMSYS_COORDINATOR": f"{coordinator_host}:{port}", "LMSYS_NUM_PROCESSES": str(num_processes),
          "LMSYS_PROCESS_ID": str(process_id)}
