"""Notebook-facing analysis: load_run, load_runs, restore, and the notebook itself."""

import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from lmsys import analysis
from tests.conftest import REPO
from tests.helpers import run_main


def _make_run(workdir, *extra):
  assert run_main(["--config=configs/mlp.py:smoke", f"--workdir={workdir}", *extra]) == 0


def test_load_run_and_restore_without_model(tmp_path):
  _make_run(tmp_path / "a")
  run = analysis.load_run(str(tmp_path / "a"))
  assert run.config.train.num_steps == 20
  assert set(run.metrics.columns) >= {"step", "split", "loss"}
  assert run.results["digits"]["steps"] == 20
  params = run.restore()
  assert params["Dense_0"]["kernel"].shape == (64, 32)
  early = run.restore(step=10)
  assert not np.array_equal(early["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


def test_load_runs_one_row_per_run(tmp_path):
  _make_run(tmp_path / "a")
  _make_run(tmp_path / "b", "--config.model.activation=squareplus")
  table = analysis.load_runs(str(tmp_path))
  assert len(table) == 2
  assert set(table["config.model.activation"]) == {"relu", "squareplus"}
  assert "results.digits.test_accuracy" in table.columns


@pytest.mark.slow
def test_notebook_executes_on_a_run(tmp_path):
  _make_run(tmp_path / "run")
  nb = nbformat.read(REPO / "experiments" / "notebooks" / "analysis.ipynb", as_version=4)
  os.environ["LMSYS_RUN"] = str(tmp_path / "run")
  try:
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
  finally:
    del os.environ["LMSYS_RUN"]
  outputs = "".join(str(o) for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert "image/png" in outputs or "Figure" in outputs
  assert "Dense_0" in outputs
