"""Config helpers: variants, defaults, loading, validation, the resume check.

Configs are plain Python files with `get_config(arg=None)` returning an
`ml_collections.ConfigDict` (big_vision style). `arg` is the text after the
colon of `configs/X.py:smoke,steps=100`, parsed by `parse_arg`. Everything
here raises `ConfigError` with one line naming the bad key, so the runner can
stop before any compute and before anything is written. This module imports
no jax: loading a config stays cheap (a notebook, `--help`, the sweep tool).
"""

from __future__ import annotations

import importlib.util
import json
import os
import traceback
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """A bad config value, named by its key. Raised before any compute."""


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """Parses a config variant string against named defaults (big_vision's parse_arg).

    parse_arg("smoke,steps=100", smoke=False, full=False, steps=0)
      -> {smoke: True, full: False, steps: 100}

  A bare name sets a bool flag; `key=value` is converted to the default's type
  (bool accepts true/false/1/0). An unknown name or a value of the wrong type
  is a ConfigError naming it, so a typo in `:smok` fails instead of silently
  running the full experiment.
  """
  result = ml_collections.ConfigDict(dict(spec))
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    name, has_value, text = item.partition("=")
    name = name.strip()
    if name not in spec:
      raise ConfigError(f"config variant {name!r} is unknown (known: {', '.join(spec) or 'none'})")
    default = spec[name]
    if not has_value:
      if not isinstance(default, bool):
        raise ConfigError(f"config variant {name!r} needs a value ({name}=...)")
      result[name] = True
      continue
    result[name] = _convert(name, text.strip(), default)
  return result


def _convert(name: str, text: str, default: Any) -> Any:
  try:
    if isinstance(default, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.lower() in ("true", "1")
    if isinstance(default, int):
      return int(text)
    if isinstance(default, float):
      return float(text)
  except ValueError:
    raise ConfigError(f"config variant {name}={text!r}: expected {type(default).__name__}") from None
  return text


def experiment_config(experiment: str, seed: int = 0) -> ml_collections.ConfigDict:
  """A new config naming its experiment module (experiments/<experiment>.py) and seed."""
  c = ml_collections.ConfigDict({"experiment": experiment, "seed": seed})
  # Where metrics go besides metrics.jsonl and TensorBoard: Weights & Biases, offline by
  # default (`wandb sync <workdir>/wandb/offline-run-*` uploads it later).
  c.log = ml_collections.ConfigDict({"wandb": False, "wandb_project": "lmsys", "wandb_mode": "offline"})
  return c


# The `train` section's defaults: configs start from them (`train_defaults`) and the trainer
# falls back to them for a key a config leaves out.
TRAIN_DEFAULTS = {
    "num_steps": 1000,
    "batch_size": 128,
    "log_every": 50,
    "eval_every": 500,
    "checkpoint_every": 500,
    "keep_checkpoints": 3,
    "progress_bar": True,   # a tqdm bar when stderr is a terminal; a line a log step / minute otherwise
    "profile_steps": 0,     # > 0: a jax.profiler trace of that many steps in <workdir>/profile/
}


def train_defaults(**overrides) -> ml_collections.ConfigDict:
  """The `train` section every trained experiment starts from (read by lmsys.trainer).

  Args:
    **overrides: keys of TRAIN_DEFAULTS to change.

  Returns:
    A ConfigDict of TRAIN_DEFAULTS updated by `overrides`.
  """
  c = ml_collections.ConfigDict(dict(TRAIN_DEFAULTS))
  c.update(overrides)
  return c


def optimizer_defaults(**overrides) -> ml_collections.ConfigDict:
  """The `optimizer` section: any optax optimizer by name, schedule, decay, clipping."""
  c = ml_collections.ConfigDict()
  c.name = "adam"           # any optax optimizer, by name
  c.learning_rate = 1e-3
  c.schedule = "constant"   # or "cosine" (decays to 0 at train.num_steps)
  c.warmup_steps = 0
  c.weight_decay = 0.0      # decoupled where the optimizer takes it (adamw), else L2 on the gradient
  c.grad_clip_norm = 0.0    # 0 = no clipping
  c.kwargs = ml_collections.ConfigDict()  # extra keyword arguments (b1, momentum, ...)
  c.update(overrides)
  return c


# Keys a resumed run may change without changing the maths of the run.
RESUME_SAFE_KEYS = (
    "train.num_steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.progress_bar", "train.profile_steps", "log.",
    "workdir",
)


def load_config_module(path: str):
  """Imports a config file as a module (its `get_config`, and `get_sweep` where it has one).

  Args:
    path: a Python file, e.g. configs/logreg.py.

  Returns:
    The module.

  Raises:
    ConfigError: one line naming the file (and the line, for an error in it): not found,
      not a Python file, a syntax error, or an exception while it runs.
  """
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  if not path.endswith(".py"):
    raise ConfigError(f"config file {path}: not a Python file (expected configs/NAME.py)")
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"lmsys_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:  # also a file that is not UTF-8 ("(unicode error) ...")
    raise ConfigError(f"config file {path}, line {e.lineno}: syntax error: {e.msg}") from None
  except Exception as e:  # pylint: disable=broad-except  (an import or a name the file lacks, ...)
    raise ConfigError(f"config file {path}{_line_in(path, e)}: {type(e).__name__}: {_first_line(e)}") from None
  return module


def call_config_function(path: str, name: str, arg: str | None = None) -> Any:
  """Imports config file `path` and calls its function `name` (get_config, get_sweep) with `arg`.

  Args:
    path: the config file.
    name: the function to call.
    arg: the variant string after the colon (`smoke,steps=100`), or None (then no argument).

  Returns:
    What the function returns.

  Raises:
    ConfigError: one line naming the file (and line): see `load_config_module`; no such
      function; the function raising (a ConfigError, e.g. an unknown variant, as it is).
  """
  module = load_config_module(path)
  function = getattr(module, name, None)
  if not callable(function):
    raise ConfigError(f"config file {path}: no {name}(arg=None) function")
  try:
    return function(arg) if arg is not None else function()
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    call = f"{name}({arg!r})" if arg is not None else f"{name}()"
    raise ConfigError(f"config file {path}{_line_in(path, e)}: {call} failed: "
                      f"{type(e).__name__}: {_first_line(e)}") from None


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports `path` and calls its `get_config(arg)`; usable from notebooks.

  Args:
    path: the config file.
    arg: the variant string after the colon (`smoke,steps=100`), or None.

  Returns:
    The ConfigDict `get_config` returns.

  Raises:
    ConfigError: one line naming the file (and line), as `call_config_function`, or
      get_config not returning a ConfigDict.
  """
  config = call_config_function(path, "get_config", arg)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"config file {path}: get_config returned a {type(config).__name__}, "
                      f"not an ml_collections.ConfigDict")
  return config


def _line_in(path: str, error: BaseException) -> str:
  """', line N' of the innermost frame of `error`'s traceback in file `path`, or ''."""
  target = os.path.abspath(path)
  lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == target]
  return f", line {lines[-1]}" if lines else ""


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else ""


def check_workdir(path: str, flag: str = "--workdir") -> None:
  """Raises a ConfigError unless `path` is, or can be made, a writable directory.

  Args:
    path: the workdir; it may not exist yet.
    flag: how the message names it.

  Raises:
    ConfigError: `path` or a folder above it is a file, or the nearest existing folder is
      not writable. Nothing is created.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"{flag} {path}: exists and is not a directory")
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f"{flag} {path}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f"{flag} {path}: {existing} is not writable")


def get(config, key: str, default: Any = None) -> Any:
  """Dotted-key lookup that tolerates missing fields."""
  node = config
  for part in key.split("."):
    if not hasattr(node, "keys") or part not in node:
      return default
    node = node[part]
  return node


def require(config, key: str) -> Any:
  value = get(config, key, _MISSING)
  if value is _MISSING:
    raise ConfigError(f"config key '{key}' is required but missing")
  return value


def check_positive_int(config, key: str) -> int:
  value = require(config, key)
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f"config key '{key}': expected a positive integer, got {value!r}")
  return value


def flatten(config, prefix: str = "") -> dict[str, Any]:
  """{'a.b': 1, ...} from a nested ConfigDict / dict."""
  out = {}
  items = config.items() if hasattr(config, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def to_json_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def check_resume_compatible(old: dict, new: dict, evaluation_keys: tuple[str, ...] = ()) -> None:
  """Refuses to resume a run whose config changes anything but safe keys.

  evaluation_keys: an experiment's keys (or prefixes ending in '.') that only change what is
  evaluated after training (e.g. note 7's decoding runs), declared as `EVALUATION_KEYS` in
  its module: re-running with new ones re-evaluates the trained checkpoint."""
  old_flat, new_flat = flatten(old), flatten(new)
  safe = RESUME_SAFE_KEYS + tuple(evaluation_keys)
  is_safe = lambda k: any(k == s or (s.endswith(".") and k.startswith(s)) for s in safe)
  changed = sorted(k for k in set(old_flat) | set(new_flat)
                   if old_flat.get(k, _MISSING) != new_flat.get(k, _MISSING) and not is_safe(k))
  if changed:
    details = "; ".join(f"{k}: {old_flat.get(k, '<unset>')!r} -> {new_flat.get(k, '<unset>')!r}" for k in changed[:5])
    raise ConfigError(
        f"refusing to resume: the workdir holds a run whose config differs in {details} "
        f"(only {', '.join(safe)} may change; use a new --workdir)")


class _Missing:
  def __repr__(self):
    return "<missing>"


_MISSING = _Missing()
