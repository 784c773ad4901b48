"""Several local JAX processes joined by jax.distributed: a multi-host cluster on one machine.

Each process is a "host" with its own CPU devices, so multi-host code paths
(per-process batches, primary-only writes, checkpoints) are tested without a
cluster. `scripts/launch_multihost.py` is its command line. On a real cluster,
start `python -m experiments.run ...` once per host with LMSYS_COORDINATOR /
LMSYS_NUM_PROCESSES / LMSYS_PROCESS_ID set (or LMSYS_DISTRIBUTED=auto where JAX
detects the cluster itself).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_local(run_args: list[str], num_processes: int, devices_per_process: int = 1,
                cwd: str | None = None, program: tuple[str, ...] = ("-m", "experiments.run"),
                env: dict[str, str] | None = None, **popen_kwargs) -> list[subprocess.Popen]:
  """Starts `python PROGRAM RUN_ARGS` as num_processes local hosts and returns at once
  (a test kills one mid-run). `env` adds environment variables; `popen_kwargs` default
  to capturing stdout and stderr as text.

  `cwd` is the repository root (where `experiments/` lives; default: the current directory).
  """
  cwd = os.path.abspath(cwd or os.getcwd())
  popen_kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen_kwargs}
  port = free_port()
  procs = []
  for pid in range(num_processes):
    host_env = {**os.environ, **(env or {}),
                "LMSYS_COORDINATOR": f"127.0.0.1:{port}", "LMSYS_NUM_PROCESSES": str(num_processes),
                "LMSYS_PROCESS_ID": str(pid),
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
                "PYTHONPATH": cwd + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs.append(subprocess.Popen([sys.executable, *program, *run_args], cwd=cwd, env=host_env, **popen_kwargs))
  return procs


def launch_local(run_args: list[str], num_processes: int, devices_per_process: int = 1,
                 timeout: float = 600, cwd: str | None = None) -> list[subprocess.CompletedProcess]:
  """Runs `python -m experiments.run RUN_ARGS` as num_processes local hosts; their results.

  `cwd` is the repository root (where `experiments/` lives; default: the current directory).
  """
  procs = start_local(run_args, num_processes, devices_per_process, cwd)
  results = []
  for proc in procs:
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
  return results
