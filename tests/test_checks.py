"""lmsys.checks: each check passes good values and names the key in one line for bad ones."""

import ml_collections
import pytest

from lmsys import checks
from lmsys.config import ConfigError


def _config(**values):
  return ml_collections.ConfigDict(values)


@pytest.mark.parametrize("check, args, good, bad, message", [
    (checks.positive_int, (), 3, 0, "config key 'k': expected a positive integer, got 0"),
    (checks.positive_int, (), 3, True, "config key 'k': expected a positive integer, got True"),
    (checks.each_one_of, (("a", "b"), "task"), ("b",), (), "config key 'k': empty; name at least one task (known: a, b)"),
    (checks.non_negative_int, (), 0, -1, "config key 'k': expected an integer >= 0, got -1"),
    (checks.non_negative_int, (), 5, 2.5, "config key 'k': expected an integer >= 0, got 2.5"),
    (checks.positive_ints, (), (1, 2), (1, 0), "config key 'k': expected positive integers, got (1, 0)"),
    (checks.positive_ints, (), (1,), (), "config key 'k': expected positive integers, got ()"),
    (checks.positive_ints, (2,), (2, 3), (1, 3), "config key 'k': expected integers >= 2, got (1, 3)"),
    (checks.positive_number, (), 1e-3, -1.0, "config key 'k': expected a number > 0, got -1.0"),
    (checks.fraction, (), 0.5, 1.0, "config key 'k': expected a number in (0, 1), got 1.0"),
    (checks.fractions, (), (0.1, 0.5), (0.1, 0.0), "config key 'k': expected values in (0, 1), got (0.1, 0.0)"),
    (checks.one_of, (("relu", "gelu"), "activation"), "relu", "swish",
     "config key 'k': unknown activation 'swish' (known: relu, gelu)"),
    (checks.each_one_of, (("a", "b"), "method"), ("a", "b"), ("a", "c"),
     "config key 'k': unknown method 'c' (known: a, b)"),
])
def test_checks(check, args, good, bad, message):
  check(_config(k=good), "k", *args)
  with pytest.raises(ConfigError) as e:
    check(_config(k=bad), "k", *args)
  assert str(e.value) == message


def test_positive_ints_may_allow_empty():
  checks.positive_ints(_config(k=()), "k", 1, True)


def test_relations_between_keys():
  checks.divides(_config(a=4, b=12), "a", "b")
  with pytest.raises(ConfigError, match="config key 'a': 5 does not divide b = 12"):
    checks.divides(_config(a=5, b=12), "a", "b")
  checks.at_least(_config(a=(4, 8), b=4), "a", "b")
  with pytest.raises(ConfigError, match=r"config key 'a': every value must be >= b = 4, got \(2, 8\)"):
    checks.at_least(_config(a=(2, 8), b=4), "a", "b")


def test_missing_key_and_data_checks(tmp_path):
  with pytest.raises(ConfigError, match="config key 'nope' is required but missing"):
    checks.positive_int(_config(), "nope")

  def available(name):
    if name != "iris":
      raise ConfigError(f"unknown dataset {name!r}")
  checks.datasets(_config(names=("iris",)), "names", available)
  with pytest.raises(ConfigError, match="^config key 'names': unknown dataset 'mnist'$"):
    checks.datasets(_config(names=("iris", "mnist")), "names", available)
  (tmp_path / "v.txt").write_text("x")
  checks.file_exists(_config(p=str(tmp_path / "v.txt")), "p")
  with pytest.raises(ConfigError, match="config key 'p': file not found"):
    checks.file_exists(_config(p=""), "p", default=lambda: str(tmp_path / "none.txt"))


def test_apply_runs_the_table_in_order():
  table = [(checks.positive_int, "a"), (checks.one_of, "b", ("x",), "thing")]
  checks.apply(_config(a=1, b="x"), table)
  with pytest.raises(ConfigError, match="'b': unknown thing 'y'"):
    checks.apply(_config(a=1, b="y"), table)
