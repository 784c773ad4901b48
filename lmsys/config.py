"""Config helpers: loading, validation and the resume compatibility check.

Configs are plain Python files with `get_config(arg=None)` returning an
`ml_collections.ConfigDict` (big_vision style). Everything here raises
`ConfigError` with one line naming the bad key, so the runner can stop before
any compute and before anything is written.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
  """A bad config value, named by its key. Raised before any compute."""


# Keys a resumed run may change without changing the maths of the run.
RESUME_SAFE_KEYS = (
    "train.num_steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.progress_bar",
    "workdir",
)


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports `path` and calls its `get_config(arg)`; usable from notebooks."""
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"lmsys_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


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


def check_choice(config, key: str, choices: Iterable[str]) -> str:
  value = require(config, key)
  choices = list(choices)
  if value not in choices:
    raise ConfigError(f"config key '{key}': unknown value {value!r} (known: {', '.join(map(str, choices))})")
  return value


def check_positive_int(config, key: str) -> int:
  value = require(config, key)
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f"config key '{key}': expected a positive integer, got {value!r}")
  return value


def check_dir(path: str | None, key: str) -> str:
  if not path or not os.path.isdir(path):
    raise ConfigError(f"config key '{key}': data directory does not exist: {path!r}")
  return path


def data_dir(config=None, key: str = "data.data_dir") -> str | None:
  """The real-data root: the config key if set, else $LMSYS_DATA_DIR."""
  value = get(config, key) if config is not None else None
  return value or os.environ.get("LMSYS_DATA_DIR")


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


def check_resume_compatible(old: dict, new: dict) -> None:
  """Refuses to resume a run whose config changes anything but safe keys."""
  old_flat, new_flat = flatten(old), flatten(new)
  changed = sorted(k for k in set(old_flat) | set(new_flat)
                   if old_flat.get(k, _MISSING) != new_flat.get(k, _MISSING)
                   and k not in RESUME_SAFE_KEYS)
  if changed:
    details = "; ".join(f"{k}: {old_flat.get(k, '<unset>')!r} -> {new_flat.get(k, '<unset>')!r}" for k in changed[:5])
    raise ConfigError(
        f"refusing to resume: the workdir holds a run whose config differs in {details} "
        f"(only {', '.join(RESUME_SAFE_KEYS)} may change; use a new --workdir)")


class _Missing:
  def __repr__(self):
    return "<missing>"


_MISSING = _Missing()
