"""The entry point: workdir contents, resume rules, and one clear line for bad input."""

import json
import os

import pytest

from experiments import run as run_lib
from lmsys import analysis, metrics
from tests.conftest import REPO
from tests.helpers import run_cli, run_main, tensorboard_tags

_main = run_main


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
  assert {l["split"] for l in lines} == {"compile", "train", "eval"}


@pytest.mark.slow
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


def test_config_variants_are_parsed_typed_and_checked():
  from lmsys import config as config_lib
  spec = dict(smoke=False, steps=0, rate=0.5, name="a")
  parsed = config_lib.parse_arg("smoke, steps=100,rate=2,name=b", **spec)
  assert (parsed.smoke, parsed.steps, parsed.rate, parsed.name) == (True, 100, 2.0, "b")
  assert config_lib.parse_arg(None, **spec).to_dict() == spec
  for bad, match in (("smok", "'smok' is unknown"), ("steps=x", "steps='x': expected int"),
                     ("steps", "needs a value")):
    with pytest.raises(config_lib.ConfigError, match=match):
      config_lib.parse_arg(bad, **spec)
  config = config_lib.load_config_file(str(REPO / "configs" / "mlp.py"), "smoke,steps=7")
  assert config.train.num_steps == 7 and config.model.hidden == (32,)


def test_a_misspelt_variant_is_one_line_and_exit_2(tmp_path):
  result = run_cli(["--config=configs/mlp.py:smok", f"--workdir={tmp_path / 'w'}"])
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: config variant 'smok' is unknown (known: smoke, fashion_mnist, steps)"]
  assert not (tmp_path / "w").exists()


def test_loading_a_config_imports_no_jax():
  """Configs are read by notebooks and launchers: they must stay cheap to import."""
  import subprocess
  import sys
  code = ("import sys, glob\n"
          "from lmsys.config import load_config_file\n"
          "for path in sorted(glob.glob('configs/*.py')):\n"
          "  load_config_file(path); load_config_file(path, 'smoke')\n"
          "heavy = [m for m in ('jax', 'flax', 'orbax', 'optax', 'tensorflow') if m in sys.modules]\n"
          "print(','.join(heavy))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "", f"loading configs imported {out.stdout.strip()}"


def test_an_experiment_may_declare_evaluation_only_keys_for_resume():
  from lmsys import config as config_lib
  old = {"train": {"num_steps": 10}, "decode": {"runs": {"a": [1, True]}}, "model": {"width": 8}}
  new_decode = {"train": {"num_steps": 10}, "decode": {"runs": {"a": [1, True], "b": [5, True]}},
                "model": {"width": 8}}
  with pytest.raises(config_lib.ConfigError, match="decode.runs.b"):
    config_lib.check_resume_compatible(old, new_decode)
  config_lib.check_resume_compatible(old, new_decode, evaluation_keys=("decode.",))
  new_model = dict(new_decode, model={"width": 16})
  with pytest.raises(config_lib.ConfigError, match="model.width"):
    config_lib.check_resume_compatible(old, new_model, evaluation_keys=("decode.",))
  import experiments.kgclue
  assert "decode." in experiments.kgclue.EVALUATION_KEYS


@pytest.mark.slow
def test_tensorboard_has_hparams_figures_and_a_directory_per_named_run_and_wandb_logs_offline(tmp_path):
  pytest.importorskip("wandb", reason="the optional W&B extra (pip install -e '.[wandb]') is not installed")
  workdir = tmp_path / "w"
  result = run_cli(["--config=configs/mlp.py:smoke", f"--workdir={workdir}", "--config.log.wandb=True"],
                   env={"WANDB_SILENT": "true"})
  assert result.returncode == 0, result.stderr[-3000:]
  runs = tensorboard_tags(workdir / "tensorboard")
  assert runs["."].get("train/loss") == "simple_value", runs
  assert any(t.startswith("figures/") and kind == "image" for t, kind in runs["."].items()), runs["."]
  assert any(r.startswith("hparams") for r in runs), runs
  offline = [d for d in os.listdir(workdir / "wandb") if d.startswith("offline-run-")]
  assert offline, os.listdir(workdir / "wandb")


def test_wandb_without_the_package_is_one_error_before_anything_is_written(tmp_path, capsys, monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def no_wandb(name, *args, **kwargs):
    if name == "wandb":
      raise ImportError("No module named 'wandb'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_wandb)
  workdir = tmp_path / "w"
  assert _main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}", "--config.log.wandb=True"]) == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and "log.wandb" in err and "pip install" in err, err
  assert not workdir.exists()


def test_a_named_sub_run_gets_its_own_tensorboard_directory(tmp_path):
  with metrics.Writer(str(tmp_path)) as writer:
    writer.write(1, "train", loss=1.0)
    writer.write(1, "vae_k5/train", loss=2.0)
    writer.write(2, "vae_k5/eval", nll=3.0)
  runs = tensorboard_tags(tmp_path / "tensorboard")
  assert runs["."] == {"train/loss": "simple_value"}
  assert runs["vae_k5"] == {"train/loss": "simple_value", "eval/nll": "simple_value"}


def test_a_gs_workdir_is_one_error_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
  """The runner's lock, provenance and claims are local files: a gs:// workdir is refused (exit 2)
  with one line, and no local folder named `gs:` is made (lmsys.trainer takes gs:// workdirs)."""
  monkeypatch.chdir(tmp_path)
  assert _main(["--config=configs/mlp.py:smoke", "--workdir=gs://lmsys-test/run"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --workdir gs://lmsys-test/run: the runner writes a local "
                                             "workdir only"), err
  assert os.listdir(tmp_path) == [] and not os.path.exists(REPO / "gs:")
