"""Runs every config's `:smoke` variant and records its metrics, to show a change leaves them unchanged.

  python scripts/smoke_metrics.py --out before.json          # on the old tree
  python scripts/smoke_metrics.py --out after.json           # on the new tree
  python scripts/smoke_metrics.py --compare before.json after.json [--rename old=new ...]

A record holds, per config, every value of `metrics.jsonl` and `results.json`; `--compare`
drops the values that measure time (keys naming seconds, speed, timings, ratios of times,
measured crossovers) and reports every other value that differs (bitwise: JSON equality).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

_TIME_KEY = re.compile(r"(second|_s$|_ms$|time|speed|per_s|ratio|measured|timings)")


def record(repo: str) -> dict:
  """{config name: {'rc', 'metrics', 'results'}} from a smoke run of every config under repo/configs."""
  out = {}
  for path in sorted(glob.glob(os.path.join(repo, "configs", "*.py"))):
    name = os.path.basename(path)[:-3]
    with tempfile.TemporaryDirectory() as workdir:
      proc = subprocess.run([sys.executable, "-m", "experiments.run", "--config", f"configs/{name}.py:smoke",
                             "--workdir", workdir], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": repo}, check=False)
      metrics_path, results_path = os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "results.json")
      metrics = [json.loads(line) for line in open(metrics_path)] if os.path.exists(metrics_path) else []
      results = json.load(open(results_path)) if os.path.exists(results_path) else None
      out[name] = {"rc": proc.returncode, "metrics": metrics, "results": results}
      print(name, "exit", proc.returncode, flush=True)
  return out


def _flat(value, prefix=""):
  if isinstance(value, dict):
    for key, item in value.items():
      yield from _flat(item, f"{prefix}/{key}")
  elif isinstance(value, list):
    for i, item in enumerate(value):
      yield from _flat(item, f"{prefix}[{i}]")
  else:
    yield prefix, value


def compare(before: dict, after: dict, renames: dict[str, str]) -> int:
  """Prints each config's differing non-timing values; returns the number of configs that differ."""
  differing = 0
  for name, old in sorted(before.items()):
    new = after.get(renames.get(name, name))
    if new is None:
      print(f"{name}: missing after")
      differing += 1
      continue
    a = {k: v for k, v in _flat(old) if not _TIME_KEY.search(k)}
    b = {k: v for k, v in _flat(new) if not _TIME_KEY.search(k)}
    diff = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    print(f"{name}: {len(a)} values compared, " + ("identical" if not diff else f"{len(diff)} differ: {diff[:5]}"))
    differing += bool(diff)
  return differing


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", help="write this tree's smoke metrics here")
  parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
  parser.add_argument("--rename", nargs="*", default=[], help="old=new config names")
  args = parser.parse_args()
  if args.compare:
    before, after = (json.load(open(p)) for p in args.compare)
    return 1 if compare(before, after, dict(r.split("=", 1) for r in args.rename)) else 0
  if not args.out:
    parser.error("give --out FILE or --compare BEFORE AFTER")
  json.dump(record(os.getcwd()), open(args.out, "w"), indent=1, sort_keys=True, default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
