"""`python -m experiments.run --help` and the error line for a config file that does not exist."""

import os

from tests.conftest import REPO
from tests.helpers import run_cli, run_main

CONFIG_FILES = sorted(f[:-3] for f in os.listdir(REPO / "configs") if f.endswith(".py"))


def test_help_exits_0_and_lists_flags_and_configs():
  proc = run_cli(["--help"], timeout=120)
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout
  for flag in ("--config FILE[:VARIANT]", "--workdir DIR", "--config.KEY=VALUE", "--compilation_cache DIR",
               "-h, --help"):
    assert flag in out, flag
  config_lines = out.split("\nconfigs ", 1)[1].splitlines()[1:]
  assert [line.split()[0] for line in config_lines] == CONFIG_FILES
  # One line per config: its name, then the first line of its docstring.
  assert "  logreg               Note 1 (kexue 8578): analytic logistic regression vs MLE" in out
  assert "  vae                  Note 6 (kexue 8791): a VAE as an importance-sampling estimator" in out
  assert "  mlp                  Trainer demo: an MLP classifier on a bundled scikit-learn dataset." in out


def test_short_help_flag_exits_0_before_reading_any_config(capsys):
  assert run_main(["-h", "--config=configs/nope.py"]) == 0
  assert "usage: python -m experiments.run" in capsys.readouterr().out


def test_unknown_config_is_one_line_listing_the_known_ones(tmp_path, capsys):
  workdir = tmp_path / "w"
  assert run_main(["--config=configs/nope.py:smoke", f"--workdir={workdir}"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: config file not found: configs/nope.py (")
  assert "attention_approx, attention_approx_lm, attention_cost, jl, kgclue, logreg, mlp," in err
  assert not workdir.exists()


def test_the_compilation_cache_flag_fills_a_folder_that_a_second_run_reuses(tmp_path):
  cache = tmp_path / "xla_cache"
  env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # cache even the smoke run's fast compilations
  first = run_cli(["--config=configs/mlp.py:smoke", f"--workdir={tmp_path / 'a'}", "--compilation_cache", str(cache)],
                  env=env)
  assert first.returncode == 0, first.stderr
  programs = lambda: {n: os.stat(cache / n).st_mtime_ns for n in os.listdir(cache) if n.endswith("-cache")}
  entries = programs()
  assert any(name.startswith("jit_train_step") for name in entries), entries
  second = run_cli(["--config=configs/mlp.py:smoke", f"--workdir={tmp_path / 'b'}", f"--compilation_cache={cache}"],
                   env=env)
  assert second.returncode == 0, second.stderr
  assert programs() == entries  # every program was read from the cache: none compiled and written again


def test_the_compilation_cache_flag_needs_a_folder(tmp_path):
  proc = run_cli(["--config=configs/mlp.py:smoke", f"--workdir={tmp_path / 'a'}", "--compilation_cache"])
  assert proc.returncode == 2 and proc.stderr.strip() == "error: --compilation_cache needs a folder"
  assert not (tmp_path / "a").exists()
