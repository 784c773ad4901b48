"""The SLURM task (lmsys/launch/slurm.py) through submitit's local executor: a trial signalled
as SLURM signals a job before its time limit or at a preemption is stopped, saved, requeued,
and resumes from its checkpoint."""

import json
import os
import sys
import time

import pytest

from lmsys import analysis
from lmsys.workdir_lock import LOCK_NAME
from tests.conftest import REPO

STEPS = 40_000  # ~30 s of training on 2 busy cores: the signal lands well before the end


def _parent_pid(pid: int) -> int:
  with open(f"/proc/{pid}/stat") as f:
    return int(f.read().rsplit(")", 1)[1].split()[1])


def _wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while not predicate():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.1)


@pytest.mark.slow
def test_a_signalled_trial_is_requeued_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
  # submitit configures logging when imported unless told not to (see tests/launch/test_sweep.py).
  monkeypatch.setenv("SUBMITIT_LOG_LEVEL", "NOCONFIG")
  import submitit  # pylint: disable=g-import-not-at-top

  from lmsys.launch import slurm  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / "trial"
  command = [sys.executable, "-m", "experiments.run", "--config=configs/mlp.py:smoke",
             f"--workdir={workdir}", f"--config.train.num_steps={STEPS}", "--config.train.log_every=50",
             f"--config.train.eval_every={STEPS}", f"--config.train.checkpoint_every={STEPS}"]
  log = tmp_path / "trial.log"
  executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
  executor.update_parameters(timeout_min=10)
  job = executor.submit(slurm.TrialTask(command, str(REPO), str(log), {"PYTHONPATH": str(REPO)}))

  metrics = workdir / "metrics.jsonl"
  _wait_for(lambda: metrics.exists() and '"split": "train"' in metrics.read_text(), 300, "training")
  run_pid = json.loads((workdir / LOCK_NAME).read_text())["pid"]  # python -m experiments.run
  task_pid = _parent_pid(run_pid)                                  # the submitit task running it
  assert task_pid != os.getpid()
  os.kill(task_pid, slurm.preemption_signal())  # what SLURM sends `signal_delay_s` before the limit

  result = job.result()
  text = log.read_text()
  assert result["returncode"] == 0 and result["attempts"] == 2, text
  # The first attempt saved at the signal (no periodic checkpoint before step STEPS) and stopped...
  assert "stopped: SIGTERM" in text and "--- requeued by submitit: attempt 2 ---" in text
  # ... and the second resumed from that step, then finished.
  compiles = analysis.read_metrics(str(metrics)).query("split == 'compile'")["step"].tolist()
  assert len(compiles) == 2 and compiles[0] == 0 and 0 < compiles[1] < STEPS, compiles
  assert json.loads((workdir / "results.json").read_text())["digits"]["steps"] == STEPS
  assert not (workdir / LOCK_NAME).exists()
