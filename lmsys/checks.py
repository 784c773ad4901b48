"""Shared config checks for experiments' `validate(config)`: plain functions and a table.

An experiment lists its checks as tuples `(check, key, *args)` and runs them with `apply`:

  CHECKS = [(checks.trained,),
            (checks.positive_int, "data.small_n"),
            (checks.each_one_of, "methods", METHODS, "method")]

  def validate(config):
    checks.apply(config, CHECKS)

Each check raises `ConfigError` with one line naming the key (the runner prints it and
exits 2 before any compute). Nothing here loads data or computes: file checks look at
names and headers only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from lmsys.config import ConfigError, check_positive_int, get, require


def apply(config, table: Sequence[tuple]) -> None:
  """Runs each `(check, *args)` of `table` as `check(config, *args)`, in order."""
  for check, *args in table:
    check(config, *args)


def trained(config) -> None:
  """The `seed`, `train.*` and `optimizer.*` keys the shared trainer reads (lmsys.trainer)."""
  from lmsys import trainer  # pylint: disable=g-import-not-at-top  (jax: only where an experiment trains)
  trainer.validate_config(config)


def optimizer_name(config, key: str = "optimizer.name") -> None:
  """An optax optimizer by name (for experiments that build one without the trainer's checks)."""
  import optax  # pylint: disable=g-import-not-at-top
  name = require(config, key)
  if not isinstance(name, str) or name.startswith("_") or not callable(getattr(optax, name, None)):
    raise ConfigError(f"config key '{key}': unknown optax optimizer {name!r}")


def positive_int(config, key: str) -> None:
  """An int > 0 (not a bool)."""
  check_positive_int(config, key)


def non_negative_int(config, key: str) -> None:
  """An int >= 0 (not a bool), e.g. a limit where 0 means none."""
  value = require(config, key)
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ConfigError(f"config key '{key}': expected an integer >= 0, got {value!r}")


def positive_ints(config, key: str, minimum: int = 1, allow_empty: bool = False) -> None:
  """A sequence of ints >= minimum (non-empty unless allow_empty)."""
  value = require(config, key)
  if (not isinstance(value, (list, tuple)) or (not value and not allow_empty)
      or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in value)):
    what = "positive integers" if minimum == 1 else f"integers >= {minimum}"
    raise ConfigError(f"config key '{key}': expected {what}, got {value!r}")


def positive_number(config, key: str) -> None:
  """A number > 0."""
  value = require(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ConfigError(f"config key '{key}': expected a number > 0, got {value!r}")


def fraction(config, key: str) -> None:
  """A number strictly between 0 and 1."""
  value = require(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
    raise ConfigError(f"config key '{key}': expected a number in (0, 1), got {value!r}")


def fractions(config, key: str) -> None:
  """A non-empty sequence of numbers strictly between 0 and 1."""
  value = require(config, key)
  if not isinstance(value, (list, tuple)) or not value or any(
      isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0 for v in value):
    raise ConfigError(f"config key '{key}': expected values in (0, 1), got {value!r}")


def one_of(config, key: str, choices: Sequence[str], what: str = "value") -> None:
  """One of `choices`; the error lists them."""
  value = require(config, key)
  if value not in choices:
    raise ConfigError(f"config key '{key}': unknown {what} {value!r} (known: {', '.join(map(str, choices))})")


def each_one_of(config, key: str, choices: Sequence[str], what: str = "value") -> None:
  """A non-empty sequence whose every item is one of `choices`."""
  values = require(config, key)
  if not values:
    raise ConfigError(f"config key '{key}': empty; name at least one {what} (known: {', '.join(map(str, choices))})")
  for value in values:
    if value not in choices:
      raise ConfigError(f"config key '{key}': unknown {what} {value!r} (known: {', '.join(map(str, choices))})")


def divides(config, key: str, other: str) -> None:
  """config[key] divides config[other] (both positive ints)."""
  value, total = check_positive_int(config, key), check_positive_int(config, other)
  if total % value:
    raise ConfigError(f"config key '{key}': {value} does not divide {other} = {total}")


def at_least(config, key: str, other: str) -> None:
  """Every value of config[key] (a number or a sequence) is >= config[other]."""
  value, bound = require(config, key), require(config, other)
  values = value if isinstance(value, (list, tuple)) else [value]
  if any(v < bound for v in values):
    raise ConfigError(f"config key '{key}': every value must be >= {other} = {bound}, got {value!r}")


def file_exists(config, key: str, default: Callable[[], str] | None = None) -> None:
  """config[key] names an existing file ("" falls back to `default()`, which may raise)."""
  path = get(config, key) or (default() if default else "")
  if not path or not os.path.isfile(path):
    raise ConfigError(f"config key '{key}': file not found: {path!r}")


def datasets(config, key: str, check: Callable[[str], None]) -> None:
  """Each name in config[key] (a name or a sequence of names) passes `check(name)`, which
  raises ConfigError (e.g. `lambda name: lmsys.data.check_available(name, data_dir)`); the
  error is prefixed with the key."""
  value = require(config, key)
  for name in ([value] if isinstance(value, str) else value):
    try:
      check(name)
    except ConfigError as e:
      raise ConfigError(f"config key '{key}': {e}") from None


def data_files(config, key: str, check: Callable[[], None]) -> None:
  """`check()` (a data module's cheap file check) passes; its ConfigError is prefixed with
  the config key that names the data (e.g. 'data.data_dir')."""
  try:
    check()
  except ConfigError as e:
    raise ConfigError(f"config key '{key}': {e}") from None
