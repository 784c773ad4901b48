"""Small utilities for tests that run the real entry point."""

import os
import subprocess
import sys

from tests.conftest import REPO


def run_cli(args, env=None, timeout=300):
  """Runs `python -m experiments.run ARGS` in a subprocess from the repo root."""
  full_env = {**os.environ, **(env or {})}
  full_env.setdefault("PYTHONPATH", str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO,
                        env=full_env, capture_output=True, text=True, timeout=timeout)
