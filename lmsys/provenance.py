"""Where a workdir came from: `provenance.json`, written when a run starts and completed at its end.

  {"git": {"commit": "<40 hex>", "dirty": false} | {"commit": null, "why": "..."},
   "command": ["python", "-m", "experiments.run", ...], "config": {...}, "config_sha256": "...",
   "versions": {"python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_collections"},
   "devices": {"kind", "count", "platform"}, "process_count", "host", "cpu_count", "load_average",
   "inputs": [{"path", "bytes", "sha256"}, ...],
   "start_utc", "end_utc", "wall_seconds", "status": "running" | "done" | "failed (exit N)",
   "previous": [earlier invocations on this workdir (a resume): their commit, times and status]}

`config_sha256` is the sha256 of the config as canonical JSON (sorted keys, no spaces), so
two runs of the same resolved config have the same hash. `inputs` are the data files the
experiment declares (`inputs(config)` in its module), hashed when the run starts.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

PROVENANCE_FILE = "provenance.json"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_collections")


def config_sha256(config_json: dict) -> str:
  """sha256 of the config as canonical JSON (sorted keys, compact separators)."""
  text = json.dumps(config_json, sort_keys=True, separators=(",", ":"), default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      digest.update(block)
  return digest.hexdigest()


def git_state(directory: str) -> dict:
  """{"commit": 40 hex, "dirty": bool} of the git checkout holding `directory`, or
  {"commit": None, "why": ...} when there is none (an installed copy, git missing)."""
  def git(*args):
    return subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=30,
                          check=False)
  try:
    head = git("rev-parse", "HEAD")
  except (OSError, subprocess.SubprocessError) as e:
    return {"commit": None, "why": f"git could not run: {e}"}
  if head.returncode != 0:
    return {"commit": None, "why": (head.stderr.strip().splitlines() or ["not a git checkout"])[-1]}
  status = git("status", "--porcelain", "--untracked-files=no")
  changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
  state = {"commit": head.stdout.strip(), "dirty": bool(changed)}
  if changed:
    state["changed_files"] = changed[:20]
  return state


def versions() -> dict:
  """Python and the versions of the packages a result depends on (None: not installed)."""
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def devices() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  return {"kind": jax.devices()[0].device_kind, "count": jax.device_count(),
          "local_count": jax.local_device_count(), "platform": jax.default_backend()}


def describe_inputs(paths: Iterable[str]) -> list[dict]:
  """[{"path", "bytes", "sha256"}] of each existing file (sorted, duplicates once); a missing
  path is listed with "missing": true."""
  out = []
  for path in sorted({os.path.abspath(p) for p in paths}):
    if os.path.isfile(path):
      out.append({"path": path, "bytes": os.path.getsize(path), "sha256": file_sha256(path)})
    else:
      out.append({"path": path, "missing": True})
  return out


def environment(code_dir: str) -> dict:
  """Where a measurement runs: the code's commit and the machine, as `start` records them.

  Args:
    code_dir: a directory of the code that runs (its git checkout is recorded).
  Returns:
    {"git", "versions", "devices", "process_count", "host", "cpu_count", "load_average"}.
  """
  return {
      "git": git_state(code_dir),
      "versions": versions(),
      "devices": devices(),
      "process_count": _process_count(),
      "host": socket.gethostname(),
      "cpu_count": os.cpu_count(),
      "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
  }


def now_utc() -> str:
  """The current UTC time as provenance records it (ISO 8601 to the second, `YYYY-MM-DDTHH:MM:SSZ`)."""
  return _now()


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(workdir: str, *, command: Sequence[str], config_json: dict, code_dir: str,
          inputs: Iterable[str] = ()) -> dict:
  """Writes workdir/provenance.json for a run that starts now; returns it.

  Args:
    workdir: the run's directory.
    command: the command line (program and arguments).
    config_json: the resolved config as JSON.
    code_dir: a directory of the code that runs (its git checkout is recorded).
    inputs: the data files the run reads.
  Returns:
    The record written. A workdir that already has one (a resume) keeps the earlier
    invocations under "previous".
  """
  previous = []
  old = read(workdir)
  if old is not None:
    previous = old.get("previous", []) + [{k: old.get(k) for k in
                                           ("git", "command", "start_utc", "end_utc", "status")}]
  env = environment(code_dir)
  record = {
      "git": env.pop("git"),
      "command": list(command),
      "config": config_json,
      "config_sha256": config_sha256(config_json),
      **env,
      "inputs": describe_inputs(inputs),
      "start_utc": _now(), "end_utc": None, "wall_seconds": None, "status": "running",
      "previous": previous,
  }
  record["_start_monotonic"] = time.monotonic()
  _write(workdir, record)
  return record


def finish(workdir: str, record: dict, status: str = "done") -> dict:
  """Completes the record of `start`: end time, wall seconds, status; rewrites the file."""
  record = dict(record)
  record["end_utc"] = _now()
  record["wall_seconds"] = round(time.monotonic() - record.pop("_start_monotonic", time.monotonic()), 3)
  record["status"] = status
  _write(workdir, record)
  return record


def read(workdir: str) -> dict | None:
  path = os.path.join(workdir, PROVENANCE_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write(workdir: str, record: dict) -> None:
  path = os.path.join(workdir, PROVENANCE_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump({k: v for k, v in record.items() if not k.startswith("_")}, f, indent=1, default=str)
    f.write("\n")
  os.replace(path + ".tmp", path)


def _process_count() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_count()


def command_line(argv: Sequence[str]) -> list[str]:
  """The command as typed: `python -m experiments.run ARGS` (argv without the program name)."""
  return [os.path.basename(sys.executable), "-m", "experiments.run", *argv]
