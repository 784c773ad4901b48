"""One sweep trial as a submitit task that a timeout or a preemption requeues.

experiments/sweep.py submits one `TrialTask` per trial (a job array, `--launcher slurm`); each
of the job's tasks (one per host) runs the trial's `python -m experiments.run ...` command as a
child process, joined to the other hosts through `jax.distributed`.

Before a job's time limit (submitit asks SLURM for its signal `signal_delay_s` ahead, 90 s by
default) or at a preemption, SLURM sends the job submitit's signal (USR2). The task then stops
its trial with SIGTERM, which the trainer answers by saving a checkpoint and exiting, and
submitit requeues the job with the state `checkpoint` returns (`submitit.helpers.
Checkpointable`): the same command, which resumes from that checkpoint on the same workdir
(resuming is bitwise equal to an uninterrupted run). submitit requeues after a timeout at most
`slurm_max_num_timeout` times (3 by default), after a preemption always. The child ignores USR2
itself: where SLURM signals every process of the job, the task alone decides what USR2 means.
This module imports submitit; only the SLURM launcher imports it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import submitit

from lmsys.launch import sweep

STOP_TIMEOUT_S = 60.0  # SIGTERM -> the trial's checkpoint and exit; then SIGKILL


def preemption_signal() -> signal.Signals:
  """The signal submitit asks SLURM (and its local executor) to send before a timeout: USR2."""
  return signal.Signals["SIG" + submitit.JobEnvironment.USR_SIG]


def has_exited(pid: int) -> bool:
  """Whether child `pid` has exited, without reaping it (the Popen object still reaps it).

  Safe inside a signal handler that interrupted a wait for the same child, unlike
  `Popen.poll`, which a running `Popen.wait` holds a lock against.
  """
  try:
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
  except ChildProcessError:  # already reaped
    return True


class TrialTask(submitit.helpers.Checkpointable):
  """Runs one trial's command on one host of a submitit job; requeued with its attempt count.

  Args:
    command: the trial's `python -m experiments.run ...` argv.
    cwd: the directory to run it in (the repository root).
    log_path: where the first task's output goes; task i > 0 writes `log_path.i`.
    env: variables added to the job's environment.

  Calling it returns {'returncode', 'error' (the log's tail when the command failed), 'task'
  (this task's rank), 'attempts' (1 + the times the job was requeued)}.
  """

  def __init__(self, command: list[str], cwd: str, log_path: str, env: dict | None = None):
    self.command = list(command)
    self.cwd = cwd
    self.log_path = log_path
    self.env = dict(env or {})
    self.attempt = 0        # requeues so far: saved in the pickle `checkpoint` returns
    self._process = None    # the running command (never pickled)

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_process"] = None
    return state

  def __call__(self) -> dict:
    job = submitit.JobEnvironment()
    host = job.hostnames[0] if job.num_nodes > 1 else "127.0.0.1"
    env = {**os.environ, **self.env,
           **sweep.distributed_env(host, job.num_tasks, job.global_rank, job.job_id)}
    log_path = f"{self.log_path}.{job.global_rank}" if job.global_rank else self.log_path
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    usr_signal = preemption_signal()
    submitit_handler = signal.getsignal(usr_signal)

    def stop_then_let_submitit_requeue(signum, frame):
      self.stop()  # every task stops its process: a multi-host save needs all of them
      if callable(submitit_handler):  # the first task: `checkpoint`, requeue, exit
        submitit_handler(signum, frame)

    with open(log_path, "a" if self.attempt else "w") as log:
      if self.attempt:
        log.write(f"--- requeued by submitit: attempt {self.attempt + 1} ---\n")
        log.flush()
      self._process = subprocess.Popen(  # pylint: disable=consider-using-with
          self.command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
          preexec_fn=lambda: signal.signal(usr_signal, signal.SIG_IGN))
    signal.signal(usr_signal, stop_then_let_submitit_requeue)
    try:
      while not has_exited(self._process.pid):
        time.sleep(0.2)
      returncode = self._process.wait()
    finally:
      signal.signal(usr_signal, submitit_handler)
      self.stop()  # an exception (the local executor's SIGINT, a requeue's exit) leaves no orphan
    error = ""
    if returncode:
      with open(log_path, errors="replace") as f:
        error = sweep.tail(f.read())
    return {"returncode": returncode, "error": error, "task": job.global_rank,
            "attempts": self.attempt + 1}

  def stop(self) -> None:
    """SIGTERM to the running command (the trainer saves a checkpoint and exits); SIGKILL if it
    has not exited after STOP_TIMEOUT_S. Does nothing when no command is running."""
    process = self._process
    if process is None or has_exited(process.pid):
      return
    os.kill(process.pid, signal.SIGTERM)  # not reaped yet, so the pid is still this child's
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while not has_exited(process.pid):
      if time.monotonic() > deadline:
        os.kill(process.pid, signal.SIGKILL)
        break
      time.sleep(0.1)

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    """What submitit requeues: this task, its command stopped (and so saved), one attempt on."""
    self.stop()
    self.attempt += 1
    return super().checkpoint(*args, **kwargs)
