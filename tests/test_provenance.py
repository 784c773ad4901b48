"""lmsys.provenance and what the runner writes besides results: provenance.json, claims.json."""

import json
import os
import subprocess

import pytest

from lmsys import analysis, provenance
from tests.helpers import run_main

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256(b"abc"), FIPS 180-2


def test_hashes(tmp_path):
  path = tmp_path / "f"
  path.write_bytes(b"abc")
  assert provenance.file_sha256(str(path)) == ABC_SHA256
  # The canonical JSON of {"b": [1, 2], "a": 1} is '{"a":1,"b":[1,2]}', whatever the key order;
  # its sha256 (by `printf '{"a":1,"b":[1,2]}' | sha256sum`):
  expected = "8baa73198470c7bb4c3ce142a8fd651affc0310d878bb9bd159e37a573fb4874"
  assert provenance.config_sha256({"b": [1, 2], "a": 1}) == expected
  assert provenance.config_sha256({"a": 1, "b": [1, 2]}) == expected


def test_git_state(tmp_path):
  repo = tmp_path / "repo"
  repo.mkdir()
  git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True)
  git("init", "-q")
  (repo / "a.py").write_text("x = 1\n")
  git("add", "a.py")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
  head = git("rev-parse", "HEAD").stdout.strip()
  assert provenance.git_state(str(repo)) == {"commit": head, "dirty": False}
  (repo / "a.py").write_text("x = 2\n")
  state = provenance.git_state(str(repo))
  assert state["commit"] == head and state["dirty"] is True and state["changed_files"] == ["a.py"]
  (repo / "untracked.txt").write_text("not part of the code")
  git("checkout", "a.py")
  assert provenance.git_state(str(repo))["dirty"] is False  # untracked files do not count
  outside = provenance.git_state(str(tmp_path / "none"))
  assert outside["commit"] is None and outside["why"]


def test_describe_inputs(tmp_path):
  (tmp_path / "b").write_bytes(b"abc")
  rows = provenance.describe_inputs([str(tmp_path / "b"), str(tmp_path / "b"), str(tmp_path / "gone")])
  assert rows == [{"path": str(tmp_path / "b"), "bytes": 3, "sha256": ABC_SHA256},
                  {"path": str(tmp_path / "gone"), "missing": True}]


@pytest.mark.slow
def test_the_runner_records_provenance_and_claims(tmp_path, capsys):
  workdir = tmp_path / "w"
  args = ["--config=configs/mlp.py:smoke", f"--workdir={workdir}"]
  assert run_main(args) == 0
  record = json.loads((workdir / "provenance.json").read_text())
  commit = record["git"]["commit"]
  assert (len(commit) == 40 and int(commit, 16) >= 0) or record["git"]["why"]
  assert record["command"][1:] == ["-m", "experiments.run", *args]
  assert record["config"]["experiment"] == "mlp"
  assert record["config_sha256"] == provenance.config_sha256(json.loads((workdir / "config.json").read_text()))
  assert set(record["versions"]) == {"python", *provenance.PACKAGES} and record["versions"]["jax"]
  assert record["devices"]["count"] >= 1 and record["devices"]["kind"] and record["process_count"] == 1
  assert record["host"] and record["status"] == "done" and record["wall_seconds"] > 0
  assert record["start_utc"] <= record["end_utc"] and record["end_utc"].endswith("Z")
  [digits] = record["inputs"]
  assert digits["path"].endswith("digits.csv.gz") and digits["bytes"] == os.path.getsize(digits["path"])
  with open(digits["path"], "rb") as f:
    assert digits["sha256"] == __import__("hashlib").sha256(f.read()).hexdigest()
  assert json.loads((workdir / "claims.json").read_text()) == []
  run = analysis.load_run(str(workdir))
  assert run.provenance == record and run.claims == []
  # A resume rewrites the record and keeps the earlier invocation.
  assert run_main(args + ["--config.train.num_steps=30"]) == 0
  again = json.loads((workdir / "provenance.json").read_text())
  assert again["status"] == "done" and len(again["previous"]) == 1
  assert again["previous"][0]["start_utc"] == record["start_utc"]
