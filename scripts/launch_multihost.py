"""Runs an experiment as several local JAX processes joined by jax.distributed (lmsys.launch.local).

  python scripts/launch_multihost.py --num_processes 2 --devices_per_process 2 -- \\
      --config configs/mlp.py:smoke --workdir /tmp/mh
"""

from __future__ import annotations

import argparse
import os
import sys

from lmsys.launch import local

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1)
  args, run_args = parser.parse_known_args()
  run_args = [a for a in run_args if a != "--"]
  results = local.launch_local(run_args, args.num_processes, args.devices_per_process, cwd=REPO)
  for pid, r in enumerate(results):
    print(f"--- process {pid}: exit {r.returncode}")
    print(r.stdout, end="")
    if r.returncode:
      print(r.stderr[-3000:], end="", file=sys.stderr)
  sys.exit(max(r.returncode for r in results))


if __name__ == "__main__":
  main()
