"""One writer per workdir: a second run is refused in one line and writes nothing; stale locks are taken over."""

import json
import os
import socket
import subprocess
import sys

from lmsys.workdir_lock import LOCK_NAME, WorkdirLock
from tests.helpers import run_cli

ARGS = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=4", "--config.train.log_every=2"]


def _snapshot(workdir):
  return {p: os.path.getmtime(os.path.join(workdir, p)) for p in sorted(os.listdir(workdir))}


def test_a_second_run_is_refused_and_writes_nothing(tmp_path):
  workdir = tmp_path / "w"
  assert run_cli(ARGS + [f"--workdir={workdir}"]).returncode == 0
  assert not (workdir / LOCK_NAME).exists()  # released at exit
  metrics_before = (workdir / "metrics.jsonl").read_text()
  with WorkdirLock(str(workdir)):  # this process is "the first run", still going
    before = _snapshot(workdir)
    second = run_cli(ARGS + ["--config.train.num_steps=6", f"--workdir={workdir}"])
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by pid {os.getpid()} on host {socket.gethostname()}" in lines[0], lines
    assert _snapshot(workdir) == before
  assert (workdir / "metrics.jsonl").read_text() == metrics_before


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (workdir / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "then"}))
  result = run_cli(ARGS + [f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr
  assert (workdir / "results.json").is_file() and not (workdir / LOCK_NAME).exists()


def test_a_lock_held_on_another_host_is_reported_not_taken(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / LOCK_NAME).write_text(json.dumps({"host": "node-17", "pid": 4242, "since": "2026-11-25 10:00:00"}))
  result = run_cli(ARGS + [f"--workdir={workdir}"])
  assert result.returncode == 2 and "pid 4242 on host node-17" in result.stderr
  assert sorted(os.listdir(workdir)) == [LOCK_NAME]
