"""Small utilities for tests that run the real entry point."""

import contextlib
import logging
import os
import re
import select
import subprocess
import sys
import time

from tests.conftest import REPO


def run_cli(args, env=None, timeout=300, module="experiments.run", file_size_limit=None):
  """Runs `python -m MODULE ARGS` in a subprocess from the repo root.

  Args:
    args: the command-line arguments after the module.
    env: variables added to this process's environment.
    timeout: seconds before the run is killed.
    module: the entry point (`experiments.run`, `experiments.sweep`).
    file_size_limit: bytes; writes growing a file past it fail with EFBIG (RLIMIT_FSIZE, set
      by a small Python wrapper that then execs the run: no fork hook in this threaded process).

  Returns:
    The subprocess.CompletedProcess, with text stdout and stderr.
  """
  full_env = {**os.environ, **(env or {})}
  full_env.setdefault("PYTHONPATH", str(REPO))
  command = [sys.executable, "-m", module, *args]
  if file_size_limit is not None:
    command = [sys.executable, "-c", _LIMIT_THEN_EXEC.format(file_size_limit)] + command[1:]
  return subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


_LIMIT_THEN_EXEC = ("import os, resource, sys; "
                    "resource.setrlimit(resource.RLIMIT_FSIZE, ({}, resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
                    "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")


@contextlib.contextmanager
def in_repo_root():
  """Runs the block from the repository root (where `configs/...` paths resolve), then returns."""
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    yield
  finally:
    os.chdir(cwd)


def run_main(args):
  """`experiments.run.main(args)` in this process, from the repository root; its exit code."""
  from experiments import run as run_lib  # pylint: disable=g-import-not-at-top
  with in_repo_root():
    return run_lib.main(args)


def wait_for_line(proc, text, timeout):
  """True once a line of `proc.stdout` contains `text`; False at EOF or after `timeout` seconds."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
    if not ready:
      break
    line = proc.stdout.readline()
    if not line:  # EOF: the process ended
      return False
    if text in line:
      return True
  return False


def tensorboard_tags(directory):
  """{run (relative directory): {tag: 'scalar' | 'image' | other kind}} of the event files under `directory`.

  Reads the TFRecord framing (length, CRC, record, CRC) and tensorboardX's Event proto, so
  the tests need no TensorBoard install.
  """
  import struct  # pylint: disable=g-import-not-at-top

  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  runs = {}
  for root, _, files in os.walk(directory):
    for name in files:
      if not name.startswith("events.out.tfevents"):
        continue
      tags = runs.setdefault(os.path.relpath(root, directory), {})
      with open(os.path.join(root, name), "rb") as f:
        while header := f.read(12):
          (length,) = struct.unpack("<Q", header[:8])
          event = event_pb2.Event.FromString(f.read(length))
          f.read(4)
          for value in event.summary.value:
            tags[value.tag] = value.WhichOneof("value")
  return runs


def leaves(tree):
  """The leaves of a pytree as numpy arrays, in jax's leaf order (for exact comparisons)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@contextlib.contextmanager
def xla_compilations():
  """The names of the functions XLA compiles inside the block (from `jax.log_compiles`), as a
  list that fills while the block runs: `with xla_compilations() as names: ...`."""
  import jax  # pylint: disable=g-import-not-at-top
  names = []

  class _Collect(logging.Handler):
    def emit(self, record):
      found = re.match(r"Finished XLA compilation of jit\((.+?)\) in", record.getMessage())
      if found:
        names.append(found.group(1))

  handler, logger = _Collect(level=logging.DEBUG), logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      yield names
  finally:
    logger.removeHandler(handler)
