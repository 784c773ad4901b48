"""The entry point: workdir contents, resume rules, and one clear line for bad input."""

import json
import os

import pytest

from experiments import run as run_lib
from lmsys import analysis
from tests.conftest import REPO
from tests.helpers import run_cli


def _main(args):
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    return run_lib.main(args)
  finally:
    os.chdir(cwd)


def test_smoke_run_writes_the_workdir(tmp_path, capsys):
  workdir = tmp_path / "w"
  assert _main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}"]) == 0
  out = capsys.readouterr().out
  assert "test_accuracy" in out and str(workdir) in out
  for name in ("config.json", "metrics.jsonl", "results.json"):
    assert (workdir / name).is_file(), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
  assert analysis.load_run(str(workdir)).checkpoint_steps() == [10, 20]
  config = json.loads((workdir / "config.json").read_text())
  assert config["train"]["num_steps"] == 20 and config["experiment"] == "mlp"
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert all("step" in l and "split" in l for l in lines)
  assert {l["split"] for l in lines} == {"train", "eval"}


def test_resume_allows_more_steps_and_refuses_changed_maths(tmp_path, capsys):
  workdir = tmp_path / "w"
  assert _main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}"]) == 0
  assert _main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}", "--config.train.num_steps=30"]) == 0
  assert analysis.load_run(str(workdir)).results["digits"]["steps"] == 30
  before = (workdir / "config.json").read_text()
  capsys.readouterr()
  assert _main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}",
                "--config.train.num_steps=30", "--config.optimizer.learning_rate=0.5"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "optimizer.learning_rate" in err
  assert (workdir / "config.json").read_text() == before


@pytest.mark.parametrize("args, expected", [
    (["--config=configs/mlp.py:smoke", "--config.train.num_stepz=5"], "num_stepz"),
    (["--config=configs/mlp.py:smoke", "--config.train.num_steps=abc"], "num_steps"),
    (["--config=configs/missing.py"], "configs/missing.py"),
    (["--config=configs/mlp.py:smoke", "--config.data.name=mnist"], "mnist"),
    (["--config=configs/mlp.py:smoke", "--config.optimizer.name=adamz"], "optimizer.name"),
    (["--config=configs/mlp.py:smoke", "--config.model.activation=swishy"], "model.activation"),
    (["--config=configs/mlp.py:smoke", "--config.data.name=fashion_mnist",
      "--config.data.data_dir=/no/such/dir"], "/no/such/dir"),
    (["--config=configs/mlp.py:smoke", "--config.train.batch_size=-4"], "train.batch_size"),
    (["--config=configs/mlp.py:smoke", "--config.experiment=nope"], "nope"),
])
def test_bad_input_is_one_clear_line_before_anything_is_written(tmp_path, capsys, args, expected):
  workdir = tmp_path / "w"
  assert _main(args + [f"--workdir={workdir}"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert err.startswith("error:") and expected in err, err
  assert not workdir.exists()


def test_cli_bad_key_exit_code_and_default_workdir(tmp_path):
  bad = run_cli(["--config=configs/mlp.py:smoke", "--config.train.num_stepz=5"])
  assert bad.returncode == 2 and "num_stepz" in bad.stderr and "Traceback" not in bad.stderr
  assert run_lib.default_workdir("configs/mlp.py", "smoke").startswith(os.path.join("runs", "mlp-smoke"))


def test_format_results_nested_table():
  text = run_lib.format_results({"digits": {"analytic": {"acc": 0.9}, "mle": {"acc": 0.8}}})
  assert "digits / analytic" in text and "0.9" in text
