"""One writer per workdir: a second run is refused in one line and writes nothing; stale locks are taken over."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lmsys import workdir_lock
from lmsys.config import ConfigError
from lmsys.workdir_lock import LOCK_NAME, WorkdirLock
from tests.conftest import REPO
from tests.helpers import run_cli

ARGS = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=4", "--config.train.log_every=2"]


def _snapshot(workdir):
  return {p: os.path.getmtime(os.path.join(workdir, p)) for p in sorted(os.listdir(workdir))}


@pytest.mark.slow
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


@pytest.mark.slow
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


def _dead_pid():
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  return dead.pid


def test_a_takeover_never_removes_a_lock_a_live_process_has_just_taken(tmp_path, monkeypatch):
  """The race, forced: between B's reading the dead owner's lock and B's removing it, A takes
  the lock over. B must then find A's lock live and refuse, not remove it and take it too."""
  (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                                "since": "then"}))
  first = WorkdirLock(str(tmp_path))
  read = workdir_lock.read_holder
  calls = []

  def read_then_let_the_other_process_win(path):
    holder = read(path)
    calls.append(holder)
    if len(calls) == 1:  # B has read the stale lock; now A takes over before B goes on
      monkeypatch.setattr(workdir_lock, "read_holder", read)
      first.acquire()
    return holder

  monkeypatch.setattr(workdir_lock, "read_holder", read_then_let_the_other_process_win)
  second = WorkdirLock(str(tmp_path))
  with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on host"):
    second.acquire()
  assert first.held and not second.held
  assert workdir_lock.read_holder(str(tmp_path / LOCK_NAME))["pid"] == os.getpid()
  first.release()
  assert sorted(os.listdir(tmp_path)) == []


RACER = """
import os, sys, time
from lmsys.config import ConfigError
from lmsys.workdir_lock import WorkdirLock
workdir, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
  time.sleep(0.001)
try:
  WorkdirLock(workdir).acquire()
except ConfigError as e:
  print("lost:", e, flush=True)
  sys.exit(0)
print("won", flush=True)
time.sleep(3)  # hold it (not released) while the others try
"""


@pytest.mark.slow
def test_processes_racing_for_a_dead_owners_lock_exactly_one_wins(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  for round_ in range(3):
    workdir = tmp_path / f"w{round_}"
    workdir.mkdir()
    (workdir / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                                 "since": "then"}))
    go = tmp_path / f"go{round_}"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(workdir), str(go)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    time.sleep(1.5)  # all four started and waiting
    go.touch()
    outputs = [p.communicate(timeout=60) for p in racers]
    lines = [out.strip() for out, _ in outputs]
    assert all(p.returncode == 0 for p in racers), [err for _, err in outputs]
    winners = [p.pid for p, line in zip(racers, lines) if line == "won"]
    assert len(winners) == 1, lines
    assert all(f"in use by pid {winners[0]} on host" in line for line in lines if line != "won"), lines
    assert json.loads((workdir / LOCK_NAME).read_text())["pid"] == winners[0]


def test_a_lock_file_naming_no_holder_is_reported_after_a_few_seconds(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "RETRY_SECONDS", 0.2)
  (tmp_path / LOCK_NAME).write_text("not json")
  with pytest.raises(ConfigError, match="locked by a lock file that names no holder"):
    WorkdirLock(str(tmp_path)).acquire()
  assert (tmp_path / LOCK_NAME).read_text() == "not json"
