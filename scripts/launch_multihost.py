"""Runs an experiment as several local JAX processes joined by jax.distributed.

A stand-in for a multi-host cluster on one machine (each process is a "host"
with its own CPU devices), for testing multi-host code paths:

  python scripts/launch_multihost.py --num_processes 2 --devices_per_process 2 -- \\
      --config configs/mlp.py:smoke --workdir /tmp/mh

On a real cluster, start `python -m experiments.run ...` once per host with
LMSYS_COORDINATOR / LMSYS_NUM_PROCESSES / LMSYS_PROCESS_ID set (or
LMSYS_DISTRIBUTED=auto where JAX detects the cluster itself).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(run_args: list[str], num_processes: int, devices_per_process: int = 1,
           timeout: float = 600) -> list[subprocess.CompletedProcess]:
  port = free_port()
  procs = []
  for pid in range(num_processes):
    env = {**os.environ,
           "LMSYS_COORDINATOR": f"127.0.0.1:{port}", "LMSYS_NUM_PROCESSES": str(num_processes),
           "LMSYS_PROCESS_ID": str(pid),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs.append(subprocess.Popen([sys.executable, "-m", "experiments.run", *run_args], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for pid, proc in enumerate(procs):
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1)
  args, run_args = parser.parse_known_args()
  run_args = [a for a in run_args if a != "--"]
  results = launch(run_args, args.num_processes, args.devices_per_process)
  for pid, r in enumerate(results):
    print(f"--- process {pid}: exit {r.returncode}")
    print(r.stdout, end="")
    if r.returncode:
      print(r.stderr[-3000:], end="", file=sys.stderr)
  sys.exit(max(r.returncode for r in results))


if __name__ == "__main__":
  main()
