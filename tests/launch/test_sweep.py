"""Sweeps: building and naming trials, checks before any trial runs, the launchers' commands,
load_runs / aggregate over a sweep, and (slow) real sweeps: local in parallel with a failing
and a resumed trial, submitit's local executor with two processes per trial, the notebook."""

import json
import math
import os
import shlex
import stat

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from experiments import run as run_lib
from experiments import sweep as sweep_main
from lmsys import analysis
from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.launch import sweep
from tests.conftest import REPO
from tests.helpers import in_repo_root

MLP = REPO / "configs" / "mlp.py"


def _config_file(tmp_path, sweep_expr, name="tiny"):
  """A config file: configs/mlp.py:smoke with the sweep `sweep_expr` (a Python expression)."""
  path = tmp_path / f"{name}.py"
  path.write_text(f'''"""A test sweep over configs/mlp.py:smoke.

  python -m experiments.run --config {path}
"""
from lmsys import config as config_lib
from lmsys.launch import sweep


def get_config(arg=None):
  return config_lib.load_config_file({str(MLP)!r}, "smoke")


def get_sweep(arg=None):
  return {sweep_expr}
''')
  return str(path)


def _main(argv, monkeypatch):
  monkeypatch.chdir(REPO)
  return sweep_main.main([str(a) for a in argv])


# -- Building and naming trials -----------------------------------------------------

def test_product_zip_and_concatenation_compose():
  assert sweep.product({"a": [1, 2], "b": ["x", "y"]}) == [
      {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
  assert sweep.zipped({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
  trials = sweep.product(sweep.zipped({"lr": [0.1, 0.2], "steps": [10, 20]}), {"seed": [0, 1]}) + [{"lr": 1.0}]
  assert trials == [{"lr": 0.1, "steps": 10, "seed": 0}, {"lr": 0.1, "steps": 10, "seed": 1},
                    {"lr": 0.2, "steps": 20, "seed": 0}, {"lr": 0.2, "steps": 20, "seed": 1}, {"lr": 1.0}]
  assert sweep.zipped([{"a": 1}, {"a": 2}], {"b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]


@pytest.mark.parametrize("build, message", [
    (lambda: sweep.zipped({"a": [1, 2]}, {"b": [1, 2, 3]}), "differ in length"),
    (lambda: sweep.product({"a": [1]}, {"a": [2]}), "'a' is set twice"),
    (lambda: sweep.product({"model.activation": []}), "'model.activation': expected a non-empty list"),
    (lambda: sweep.product({"model.activation": "relu"}), "'model.activation': expected a non-empty list"),
    (lambda: sweep.product({}), "empty dict"),
])
def test_bad_sweep_construction_is_one_error_naming_it(build, message):
  with pytest.raises(ConfigError, match=message):
    build()


def test_trial_names_read_the_swept_values_and_are_unique():
  trials = sweep.product({"model.activation": ["relu", "gelu"], "seed": [0, 1]})
  assert sweep.trial_names(trials) == ["activation=relu,seed=0", "activation=relu,seed=1",
                                       "activation=gelu,seed=0", "activation=gelu,seed=1"]
  # Two swept keys ending alike keep their full names; tuples, floats, bools read plainly.
  names = sweep.trial_names([{"model.dropout": 0.1, "attention.dropout": 0.001, "model.train_ks": (1, 5),
                              "flag": True}])
  assert names == ["model.dropout=0.1,attention.dropout=0.001,train_ks=1-5,flag=true"]
  # Characters a file name cannot hold are replaced; names that collide get a suffix.
  names = sweep.trial_names([{"data.name": "tfds/mnist"}, {"data.name": "tfds_mnist"}, {}])
  assert names == ["name=tfds_mnist", "name=tfds_mnist~2", "default"]
  assert all("/" not in n and " " not in n for n in names)
  long = sweep.trial_names([{"x": "a" * 300}])[0]
  assert len(long) <= 120 and long.startswith("x=aaa")


def _mlp_config():
  return config_lib.load_config_file(str(MLP), "smoke")


@pytest.mark.parametrize("trials, message", [
    ([], "the sweep is empty"),
    ([{"model.activaton": "relu"}], "'model.activaton' is not a config key"),
    ([{"model.activation.x": "relu"}], "'model.activation.x' is not a config key"),
    ([{"seed": "1"}], "'seed': value '1' has the wrong type"),
    ([{"seed": 1.5}], "'seed': value 1.5 has the wrong type"),
    ([{"seed": True}], "'seed': value True has the wrong type"),
    ([{"model.hidden": 32}], "'model.hidden': value 32 has the wrong type"),
    ([{"model": 1}], "'model' is a config section"),
    ([{"seed": 0}, {"seed": 0}], "trial seed=0 appears twice"),
])
def test_validate_names_the_bad_key_or_value(trials, message):
  with pytest.raises(ConfigError, match=message):
    sweep.validate(_mlp_config(), trials)


def test_apply_follows_ml_collections_types():
  config = sweep.apply(_mlp_config(), {"optimizer.learning_rate": 1, "model.hidden": [8, 8], "seed": 3})
  assert config.optimizer.learning_rate == 1.0 and isinstance(config.optimizer.learning_rate, float)
  assert config.model.hidden == (8, 8) and config.seed == 3
  assert _mlp_config().seed == 0  # the original is untouched


def test_plan_gives_the_runner_the_trial_as_command_line_overrides(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  spec = _config_file(tmp_path, 'sweep.product({"model.hidden": [(8,), (8, 4)], "optimizer.learning_rate": [1e-3]})')
  trials = sweep_main.plan(spec, str(tmp_path / "out"), ["--config.train.num_steps=5"])
  assert [t["name"] for t in trials] == ["hidden=8,learning_rate=0.001", "hidden=8-4,learning_rate=0.001"]
  for trial in trials:
    config, _, _, workdir = run_lib.parse_args(trial["argv"])  # what the trial's runner reads
    assert workdir == str(tmp_path / "out" / trial["name"])
    assert config.model.hidden == trial["overrides"]["model.hidden"]
    assert config.optimizer.learning_rate == 1e-3 and config.train.num_steps == 5


# -- The command line: errors, dry run, launchers' commands --------------------------

@pytest.mark.parametrize("sweep_expr, message", [
    ('sweep.product({"model.nope": [1]})', "sweep key 'model.nope' is not a config key"),
    ("[]", "the sweep is empty"),
    ('sweep.product({"train.num_steps": ["10"]})', "'train.num_steps': value '10' has the wrong type"),
    ('sweep.product({"model.activation": ["relu", "relu6"]})', "trial activation=relu6: config key 'model.activation': unknown activation"),
    ('sweep.product({"seed": []})', "'seed': expected a non-empty list"),
])
def test_bad_sweep_is_one_line_exit_2_nothing_written(sweep_expr, message, tmp_path, monkeypatch, capsys):
  spec = _config_file(tmp_path, sweep_expr)
  code = _main(["--config", spec, "--workdir", tmp_path / "out"], monkeypatch)
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
  assert message in err, err
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--parallel", "0"], "must be positive"),
    (["--bogus"], "unknown argument '--bogus'"),
    (["--launcher", "tpu"], "needs --tpu NAME and --zone ZONE"),
    (["--launcher", "pbs"], "invalid choice: 'pbs'"),
    (["--config.model.nope=1"], "unknown config key in overrides"),
    (["--launcher", "slurm"], "sbatch is not on this machine's PATH"),  # PATH below has no sbatch
])
def test_bad_command_line_is_one_line(argv, message, tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("PATH", str(tmp_path))
  code = _main(["--config", "configs/mlp.py:smoke", "--workdir", tmp_path / "out", *argv], monkeypatch)
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "out").exists()


def test_config_without_get_sweep_is_refused(tmp_path, monkeypatch, capsys):
  code = _main(["--config", "configs/jl.py:smoke", "--workdir", tmp_path / "out"], monkeypatch)
  assert code == 2 and "defines no get_sweep" in capsys.readouterr().err


def test_dry_run_prints_every_command_and_writes_nothing(tmp_path, monkeypatch, capsys):
  out = tmp_path / "out"
  code = _main(["--config", "configs/mlp.py:smoke", "--workdir", out, "--dry-run",
                "--config.train.num_steps=5"], monkeypatch)
  lines = capsys.readouterr().out.strip().splitlines()
  assert code == 0 and len(lines) == 4 and not out.exists()
  for line, (activation, seed) in zip(lines, [("relu", 0), ("relu", 1), ("squareplus", 0), ("squareplus", 1)]):
    argv = shlex.split(line)
    assert argv[1:3] == ["-m", "experiments.run"]
    assert argv[3:] == ["--config=configs/mlp.py:smoke", f"--workdir={out}/activation={activation},seed={seed}",
                        "--config.train.num_steps=5", f"--config.model.activation={activation}",
                        f"--config.seed={seed}"]


def _tpu_argv(tmp_path, *extra):
  return ["--config", "configs/mlp.py:smoke", "--workdir", "/shared/sweeps/mlp", "--launcher", "tpu",
          "--tpu", "my-pod", "--zone", "us-central2-b", "--project", "proj", *extra]


def test_tpu_commands_run_each_trial_on_every_host(tmp_path, monkeypatch, capsys):
  code = _main(_tpu_argv(tmp_path), monkeypatch)
  lines = capsys.readouterr().out.strip().splitlines()
  assert code == 0 and len(lines) == 4  # one per trial, in the sweep's order; nothing run
  trials = sweep_main.plan("configs/mlp.py:smoke", "/shared/sweeps/mlp", [])
  for line, trial in zip(lines, trials):
    argv = shlex.split(line)
    assert argv[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-pod", "--zone=us-central2-b",
                        "--project=proj", "--worker=all"]
    assert argv[9].startswith("--command=") and len(argv) == 10
    lexer = shlex.shlex(argv[9][len("--command="):], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # a shell's words: split at blanks and at ( ) && ||
    remote = list(lexer)
    # cd lmsys && ( test -f WORKDIR/results.json || LMSYS_DISTRIBUTED=auto python3 -m experiments.run ARGV )
    assert remote[:4] == ["cd", "lmsys", "&&", "("]
    assert remote[4:7] == ["test", "-f", f"/shared/sweeps/mlp/{trial['name']}/results.json"]
    assert remote[7:12] == ["||", "LMSYS_DISTRIBUTED=auto", "python3", "-m", "experiments.run"]
    assert remote[12:-1] == trial["argv"] and remote[-1] == ")"


def test_tpu_run_executes_one_trial_after_another_and_goes_on_after_a_failure(tmp_path, monkeypatch, capsys):
  calls = tmp_path / "calls.txt"
  fake = tmp_path / "bin" / "gcloud"
  fake.parent.mkdir()
  # A stand-in gcloud: records its arguments; the trial with seed=1 and relu fails.
  fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncase "$*" in *activation=relu,seed=1*) exit 5;; esac\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
  code = _main(_tpu_argv(tmp_path, "--run"), monkeypatch)
  out = capsys.readouterr().out
  recorded = calls.read_text().splitlines()
  assert code == 1 and len(recorded) == 4
  assert [line.split("--workdir=/shared/sweeps/mlp/")[1].split()[0] for line in recorded] == [
      "activation=relu,seed=0", "activation=relu,seed=1", "activation=squareplus,seed=0",
      "activation=squareplus,seed=1"]
  assert "[2/4] activation=relu,seed=1: failed" in out and "gcloud exit code 5" in out
  assert "[4/4] activation=squareplus,seed=1: done" in out


def test_distributed_env_joins_the_job_on_its_first_host():
  assert sweep.distributed_env("node1", 1, 0, "77") == {}
  env0, env1 = (sweep.distributed_env("node1", 2, rank, "77") for rank in (0, 1))
  assert env0["LMSYS_COORDINATOR"] == env1["LMSYS_COORDINATOR"] and env0["LMSYS_COORDINATOR"].startswith("node1:")
  assert (env0["LMSYS_PROCESS_ID"], env1["LMSYS_PROCESS_ID"], env1["LMSYS_NUM_PROCESSES"]) == ("0", "1", "2")


# -- load_runs and aggregate over a sweep -------------------------------------------

def _fake_sweep(root):
  """A sweep directory as experiments/sweep.py leaves it: 4 done, 1 failed, 1 interrupted, 1 not started."""
  trials = sweep.product({"model.activation": ["relu", "gelu"], "seed": [0, 1]}) + [
      {"model.activation": "tanh", "seed": 0}, {"model.activation": "tanh", "seed": 1},
      {"model.activation": "elu", "seed": 0}]
  names = sweep.trial_names(trials)
  (root).mkdir()
  (root / "sweep.json").write_text(json.dumps(
      {"config": "configs/mlp.py", "overrides": [], "trials": [{"name": n, "overrides": t} for n, t in zip(names, trials)]}))
  accuracy = {"activation=relu,seed=0": 0.5, "activation=relu,seed=1": 0.7,
              "activation=gelu,seed=0": 0.6, "activation=gelu,seed=1": 0.9}
  for name, trial in zip(names, trials):
    if name == "activation=elu,seed=0":
      continue  # pending: never started
    (root / name).mkdir()
    if name == "activation=tanh,seed=0":
      (root / name / sweep.ERROR_FILE).write_text("exit code 3\nTraceback ...\nerror: non-finite loss at step 1\n\n")
      continue
    (root / name / "config.json").write_text(json.dumps({"seed": trial["seed"], "model": {"activation": trial["model.activation"]}}))
    if name in accuracy:
      (root / name / "results.json").write_text(json.dumps({"digits": {"test_accuracy": accuracy[name], "steps": 20}}))
  return names


def test_load_runs_over_a_sweep_one_row_per_trial_with_status(tmp_path):
  names = _fake_sweep(tmp_path / "sweep")
  table = analysis.load_runs(str(tmp_path / "sweep"))
  assert list(table["trial"]) == names
  assert list(table["status"]) == ["done"] * 4 + ["failed", "incomplete", "pending"]
  assert list(table["model.activation"]) == ["relu", "relu", "gelu", "gelu", "tanh", "tanh", "elu"]
  assert list(table["seed"]) == [0, 1, 0, 1, 0, 1, 0]
  assert table.loc[4, "error"] == "error: non-finite loss at step 1"
  assert table.loc[0, "results.digits.test_accuracy"] == 0.5 and table.loc[0, "config.seed"] == 0
  assert math.isnan(table.loc[5, "results.digits.test_accuracy"])
  assert analysis.swept_keys(table) == ["model.activation", "seed"]


def test_aggregate_is_mean_and_standard_error_over_seeds(tmp_path):
  _fake_sweep(tmp_path / "sweep")
  stats = analysis.aggregate(analysis.load_runs(str(tmp_path / "sweep")), "results.digits.test_accuracy")
  assert list(stats["model.activation"]) == ["relu", "gelu"]  # only groups with a done trial
  assert stats["mean"].tolist() == pytest.approx([0.6, 0.75])
  # Standard error = sample standard deviation / sqrt(n): |a - b| / 2 for two seeds.
  assert stats["sem"].tolist() == pytest.approx([0.1, 0.15])
  assert stats["count"].tolist() == [2, 2]
  overall = analysis.aggregate(analysis.load_runs(str(tmp_path / "sweep")), "results.digits.test_accuracy", by=[])
  assert overall["mean"].tolist() == pytest.approx([0.675]) and overall["count"].tolist() == [4]


def test_load_runs_of_plain_runs_gives_their_status(tmp_path):
  for name, done in (("a", True), ("b", False)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text('{"seed": 0}')
    if done:
      (tmp_path / name / "results.json").write_text('{"x": 1}')
  table = analysis.load_runs(str(tmp_path)).sort_values("workdir")
  assert list(table["status"]) == ["done", "incomplete"] and list(table["results.x"].fillna(-1)) == [1, -1]


# -- Real sweeps (subprocesses) -------------------------------------------------------

@pytest.fixture(scope="module")
def mlp_sweep(tmp_path_factory):
  """configs/mlp.py:smoke's sweep (activation x 2 seeds), two trials at a time."""
  out = tmp_path_factory.mktemp("sweep") / "mlp"
  with in_repo_root():
    code = sweep_main.main(["--config", "configs/mlp.py:smoke", "--workdir", str(out), "--parallel", "2"])
  assert code == 0
  return out


@pytest.mark.slow
def test_local_sweep_runs_every_trial_and_writes_the_summary(mlp_sweep, monkeypatch, capsys):
  summary = pd.read_csv(mlp_sweep / "summary.csv")
  assert list(summary["trial"]) == ["activation=relu,seed=0", "activation=relu,seed=1",
                                    "activation=squareplus,seed=0", "activation=squareplus,seed=1"]
  assert set(summary["status"]) == {"done"}
  for _, row in summary.iterrows():
    workdir = mlp_sweep / row["trial"]
    config = json.loads((workdir / "config.json").read_text())
    assert (config["model"]["activation"], config["seed"]) == (row["model.activation"], row["seed"])
    results = json.loads((workdir / "results.json").read_text())["digits"]
    assert row["results.digits.test_accuracy"] == pytest.approx(results["test_accuracy"])
  state = json.loads((mlp_sweep / "sweep.json").read_text())
  assert state["config"] == "configs/mlp.py:smoke" and len(state["trials"]) == 4
  # Seeds differ, so do their results: the seed override reached the runs.
  assert summary.groupby("model.activation")["results.digits.test_accuracy"].nunique().tolist() == [2, 2]

  # Again: every trial is done, so nothing runs and the results stay as they were.
  mtimes = {p: p.stat().st_mtime_ns for p in mlp_sweep.glob("*/results.json")}
  assert _main(["--config", "configs/mlp.py:smoke", "--workdir", mlp_sweep], monkeypatch) == 0
  assert "4 trials, 4 done, 0 to run" in capsys.readouterr().out
  assert {p: p.stat().st_mtime_ns for p in mlp_sweep.glob("*/results.json")} == mtimes


@pytest.mark.slow
def test_sweep_directory_holds_one_sweep(mlp_sweep, monkeypatch, capsys):
  code = _main(["--config", "configs/mlp.py:smoke", "--workdir", mlp_sweep, "--config.train.num_steps=5"], monkeypatch)
  err = capsys.readouterr().err
  assert code == 2 and "holds a sweep of configs/mlp.py:smoke" in err and "use a new --workdir" in err


@pytest.mark.slow
def test_notebook_plots_a_metric_against_a_swept_key_with_error_bars(mlp_sweep):
  nb = nbformat.read(REPO / "experiments" / "notebooks" / "sweep.ipynb", as_version=4)
  os.environ["LMSYS_SWEEP"] = str(mlp_sweep)
  try:
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
  finally:
    del os.environ["LMSYS_SWEEP"]
  outputs = "".join(str(o) for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert "image/png" in outputs
  assert "metric: results.digits.test_accuracy; x: model.activation" in outputs
  stats = analysis.aggregate(analysis.load_runs(str(mlp_sweep)), "results.digits.test_accuracy")
  assert stats["count"].tolist() == [2, 2] and stats["sem"].notna().all()  # error bars over 2 seeds
  assert f"{stats['mean'][0]:.6f}" in outputs  # the notebook's table is aggregate()'s


@pytest.mark.slow
def test_failed_trial_is_recorded_and_an_interrupted_one_resumes(tmp_path, monkeypatch, capsys):
  spec = _config_file(tmp_path, 'sweep.product({"optimizer.learning_rate": [1e-3, 1e30]})')
  out = tmp_path / "out"
  # An interrupted trial: its run stopped at step 10 of 20 (checkpoint kept, no results).
  monkeypatch.chdir(REPO)
  assert run_lib.main([f"--config={spec}", f"--workdir={out / 'learning_rate=0.001'}",
                       "--config.optimizer.learning_rate=0.001", "--config.train.num_steps=10"]) == 0
  os.remove(out / "learning_rate=0.001" / "results.json")
  capsys.readouterr()

  code = _main(["--config", spec, "--workdir", out, "--parallel", "2"], monkeypatch)
  stdout = capsys.readouterr().out
  assert code == 1 and "1 trial(s) failed: learning_rate=1e+30" in stdout
  # The failure: exit code 3 and the runner's error line, kept in the trial's directory.
  error = (out / "learning_rate=1e+30" / sweep.ERROR_FILE).read_text()
  assert error.startswith("exit code 3") and "non-finite loss" in error
  # The interrupted trial resumed at step 10 (its second compile is at step 10) and finished.
  metrics = analysis.read_metrics(str(out / "learning_rate=0.001" / "metrics.jsonl"))
  assert metrics.query("split == 'compile'")["step"].tolist() == [0, 10]
  assert json.loads((out / "learning_rate=0.001" / "results.json").read_text())["digits"]["steps"] == 20
  table = pd.read_csv(out / "summary.csv")
  assert list(table["status"]) == ["done", "failed"]
  assert "non-finite loss" in table["error"][1]


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor_two_processes(tmp_path, monkeypatch, capsys):
  """One job per trial; --nodes 2 runs the trial as two JAX processes joined by jax.distributed
  (the local executor's tasks stand for the hosts): without the coordinator variables the
  second process would find the workdir locked and the trial would fail."""
  # submitit configures logging when imported (logging.config.dictConfig), which closes the
  # handlers pytest captures logs with; NOCONFIG (submitit's own switch) leaves logging alone.
  monkeypatch.setenv("SUBMITIT_LOG_LEVEL", "NOCONFIG")
  spec = _config_file(tmp_path, 'sweep.product({"seed": [0]})')
  out = tmp_path / "out"
  code = _main(["--config", spec, "--workdir", out, "--launcher", "slurm", "--cluster", "local", "--nodes", "2",
                "--timeout_min", "10", "--config.train.num_steps=10"], monkeypatch)
  stdout = capsys.readouterr().out
  assert code == 0, stdout
  assert "submitted 1 job(s) (local)" in stdout and "[1/1] seed=0: done" in stdout
  trial = out / "seed=0"
  assert (trial / "results.json").exists() and (trial / sweep.LOG_FILE).exists()
  assert (trial / f"{sweep.LOG_FILE}.1").exists()  # the second process ran, as process 1
  assert "workdir:" not in (trial / f"{sweep.LOG_FILE}.1").read_text()  # and left the writing to process 0
  assert pd.read_csv(out / "summary.csv")["status"].tolist() == ["done"]
