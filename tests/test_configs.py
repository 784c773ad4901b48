"""Every config: a docstring with its command, `get_config(arg)`, a `smoke` variant that
validates, and (unless another test file already runs it) a smoke run end to end."""

import json
import os

import ml_collections
import pytest

from experiments import run as run_lib
from lmsys import config as config_lib
from tests.conftest import REPO

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if not p.stem.startswith("_"))
# Smoke-run end to end by their own test files.
RUN_ELSEWHERE = {"mlp", "logreg", "vae"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_documented_and_validates(name):
  path = REPO / "configs" / f"{name}.py"
  source = path.read_text()
  assert source.lstrip().startswith('"""'), f"{name}: no docstring"
  assert f"configs/{name}.py" in source and "python -m experiments.run" in source
  for arg in (None, "smoke"):
    config = config_lib.load_config_file(str(path), arg)
    assert isinstance(config, ml_collections.ConfigDict)
    module = run_lib.load_experiment(config)
    if arg == "smoke":
      module.validate(config)


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in RUN_ELSEWHERE])
def test_smoke_run_end_to_end(name, tmp_path):
  workdir = tmp_path / name
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    assert run_lib.main([f"--config=configs/{name}.py:smoke", f"--workdir={workdir}"]) == 0
  finally:
    os.chdir(cwd)
  results = json.loads((workdir / "results.json").read_text())
  assert results
  assert (workdir / "config.json").is_file() and (workdir / "metrics.jsonl").is_file()
