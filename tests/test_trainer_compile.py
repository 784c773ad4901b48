"""The trainer compiles its step once per run and reports the compile time on its own."""

import logging

import jax
import pytest

from lmsys import analysis, metrics
from lmsys import config as config_lib
from lmsys.tasks import classification
from tests.conftest import REPO


def _train_step_compilations(records):
  return [r for r in records if "Finished XLA compilation of jit(train_step)" in r.getMessage()]


@pytest.mark.slow
def test_train_step_compiles_once_per_run_including_resume(tmp_path, caplog):
  config = config_lib.load_config_file(str(REPO / "configs" / "mlp.py"), "smoke")
  config.train.num_steps, config.train.log_every = 12, 2
  config.train.eval_every, config.train.checkpoint_every = 4, 4
  config.train.progress_bar = False
  workdir = str(tmp_path)
  caplog.set_level(logging.WARNING)
  with jax.log_compiles(True):
    with metrics.Writer(workdir) as writer:
      classification.train_mlp(config, workdir, writer)
    assert len(_train_step_compilations(caplog.records)) == 1
    caplog.clear()
    config.train.num_steps = 20  # resume for 8 more steps: one compilation again, not one per phase
    with metrics.Writer(workdir) as writer:
      classification.train_mlp(config, workdir, writer)
    assert len(_train_step_compilations(caplog.records)) == 1
  rows = analysis.read_metrics(f"{workdir}/metrics.jsonl")
  compile_rows = rows[rows["split"] == "compile"]
  assert list(compile_rows["step"]) == [0, 12]
  assert (compile_rows["compile_seconds"] > 0).all()
  assert rows[rows["split"] == "train"]["compile_seconds"].isna().all()  # never mixed into train rows
