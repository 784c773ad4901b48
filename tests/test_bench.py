"""scripts/bench.py: the JSON it writes, the page it renders from records, and its --check."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench  # noqa: E402  pylint: disable=wrong-import-position

ROW_KEYS = {"id", "what", "value", "unit", "versus", "target", "repeats", "min", "median", "max", "details"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A real run of three ids at toy sizes, through the command line, as --json writes it."""
  path = tmp_path_factory.mktemp("bench") / "run.json"
  ids = ["causal_linear_attention", "trie_vs_dict", "finite_check"]
  done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), *ids, "--tiny", "--repeats", "5",
                         "--json", str(path)], capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  return ids, json.loads(path.read_text())


def test_the_json_has_one_row_per_id_with_the_median_ratio_as_value(tiny_run):
  ids, result = tiny_run
  assert [row["id"] for row in result["rows"]] == ids
  for row in result["rows"]:
    assert set(row) == ROW_KEYS
    values = row["details"]["values"]
    assert row["repeats"] == len(values) == 5
    assert row["min"] == min(values) and row["max"] == max(values)
    assert row["value"] == row["median"] == sorted(values)[2]
    assert row["what"] == bench.BENCHES[row["id"]].what and row["target"] == bench.BENCHES[row["id"]].target
  assert result["rows"][0]["target"] == "<= 2.0" and result["rows"][0]["unit"] == "ratio"
  p = result["provenance"]
  assert p["command"][:2] == ["python", "scripts/bench.py"] and "--tiny" in p["command"]
  assert len(p["git"]["commit"] or "") == 40 and p["cpu_count"] >= 1 and p["devices"]["platform"] == "cpu"
  assert p["process"]["tiny"] is True and p["wall_seconds"] > 0 and p["skipped"] == {}


def test_ids_cover_the_required_hot_paths_and_targets():
  required = {"lookahead_decoding": "<= 1.2", "constrained_decoding": "<= 1.05", "causal_linear_attention": "<= 2.0",
              "iwae_log_px": ">= 0.6", "trainer_overhead": "<= 1.02"}
  assert {i: bench.BENCHES[i].target for i in required} == required
  assert len({b.what for b in bench.BENCHES.values()}) == len(bench.BENCHES)
  assert all(b.repeats >= 5 for b in bench.BENCHES.values())


def test_interleaved_alternates_the_order_and_warms_up_each_setting():
  calls = []
  times = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3,
                            clock=iter(range(100)).__next__)
  assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a-b, b-a, a-b
  assert times == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}


@pytest.mark.parametrize("target, median, want", [("<= 1.2", 1.2, True), ("<= 1.2", 1.21, False),
                                                  (">= 0.6", 0.55, False), (None, 3.0, None)])
def test_met_reads_the_target(target, median, want):
  assert bench.met({"target": target, "median": median}) is want


def _write_page_and_record(tmp_path, tiny_run):
  records, page = tmp_path / "records", tmp_path / "performance.md"
  records.mkdir()
  (records / "run.json").write_text(json.dumps(tiny_run[1]))
  page.write_text("# Performance\n\nHand-written discussion.\n")
  args = ["--records", str(records), "--page", str(page)]
  return args, page


def test_render_then_check_round_trips_and_keeps_the_discussion(tmp_path, tiny_run, capsys):
  args, page = _write_page_and_record(tmp_path, tiny_run)
  assert bench.main(["--render", *args]) == 0
  text = page.read_text()
  assert text.startswith("# Performance\n\n" + bench.BEGIN) and text.endswith("Hand-written discussion.\n")
  row = tiny_run[1]["rows"][0]
  line = next(ln for ln in text.splitlines() if ln.startswith("| `causal_linear_attention` |"))
  assert f"| {bench._fmt(row['median'])} ({bench._fmt(row['min'])}–{bench._fmt(row['max'])}) |" in line
  assert "| <= 2.0 |" in line and tiny_run[1]["provenance"]["git"]["commit"][:10] in line
  assert bench.main(["--check", *args]) == 0
  assert bench.main(["--render", *args]) == 0 and page.read_text() == text  # rendering is stable


def test_check_fails_on_an_edited_page_naming_the_line(tmp_path, tiny_run, capsys):
  args, page = _write_page_and_record(tmp_path, tiny_run)
  bench.main(["--render", *args])
  lines = page.read_text().splitlines()
  number = next(i for i, ln in enumerate(lines) if ln.startswith("| `trie_vs_dict` |"))
  lines[number] = lines[number].replace("| `trie_vs_dict` |", "| `trie_vs_dict` (edited) |")
  page.write_text("\n".join(lines) + "\n")
  capsys.readouterr()
  assert bench.main(["--check", *args]) == 1
  err = capsys.readouterr().err
  assert f"performance.md:{number + 1}: differs from its records" in err and "(edited)" in err


def test_the_committed_page_matches_its_records():
  assert bench.check(bench.RECORDS, bench.PAGE) is None
