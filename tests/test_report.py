"""experiments/report.py: records from workdirs, generated pages and README table, --check."""

import json
import os

import pytest

from experiments import report
from lmsys import claims

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _workdir(path, *, variant="", with_claims=True, with_provenance=True, experiment="logreg"):
  """A finished run as the runner leaves it (no checkpoints needed)."""
  os.makedirs(path)
  config = {"experiment": experiment, "seed": 0}
  json.dump(config, open(os.path.join(path, "config.json"), "w"))
  json.dump({"iris": {"full": {"analytic": {"test_acc": 1.0, "steps": 3}, "mle": {"test_acc": 0.1053}},
                      "intervals": {"analytic-mle": [0.79, 0.97]}}},
            open(os.path.join(path, "results.json"), "w"))
  if with_claims:
    records = [claims.claim("better", "1", "analytic beats MLE", metric="test accuracy difference",
                            value=0.8947, interval=[0.79, 0.97], dataset="iris",
                            baseline=claims.baseline("mle_long", 0.87, True), detail="iris, 38 test rows")]
    claims.write(path, records + [claims.summarize(records)])
  if with_provenance:
    spec = "configs/logreg.py" + (f":{variant}" if variant else "")
    json.dump({"git": {"commit": COMMIT, "dirty": False},
               "command": ["python", "-m", "experiments.run", f"--config={spec}", "--workdir=/x"],
               "config": config, "versions": {"jax": "0.10.2", "python": "3.11.7"},
               "devices": {"kind": "cpu", "count": 1}, "host": "box", "cpu_count": 2, "load_average": [1.5, 1, 1],
               "start_utc": "2026-12-04T22:07:16Z", "end_utc": "2026-12-04T22:10:16Z", "wall_seconds": 180.0,
               "status": "done"}, open(os.path.join(path, "provenance.json"), "w"))
  return path


@pytest.fixture
def docs(tmp_path):
  out = tmp_path / "docs"
  out.mkdir()
  (out / "logreg.md").write_text("# Note 1: logistic regression\n\nHand-written discussion.\n")
  (tmp_path / "README.md").write_text(f"# lmsys\n\n## The notes\n\n{report.BEGIN}\n{report.END}\n\nMore text.\n")
  return out, tmp_path / "README.md"


def test_a_run_becomes_a_record_and_a_generated_page(tmp_path, docs, capsys):
  out, readme = docs
  run_dir = _workdir(str(tmp_path / "run"))
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) == 0
  record = out / "records" / "logreg"
  assert sorted(os.listdir(record)) == ["claims.json", "provenance.json", "results.json"]
  page = (out / "logreg.md").read_text()
  # The title, then the generated section, then the hand-written discussion.
  assert page.startswith("# Note 1: logistic regression\n\n" + report.BEGIN)
  assert page.index(report.END) < page.index("Hand-written discussion.")
  assert f"commit `{COMMIT[:10]}`, 2026-12-04 22:07:16 UTC, 1 x cpu on host box" in page
  assert "| iris | 0.8947 [0.79, 0.97] | mle_long 0.87 | **holds** | iris, 38 test rows |" in page
  assert claims.RULE_TEXT in page
  text = readme.read_text()
  assert ("| 1 | **better**: analytic beats MLE | **holds** | 0.8947 [0.79, 0.97] | "
          "[logreg.md](docs/results/logreg.md) |") in text
  assert ("| 7 | Seq2seq with trie-constrained decoding (KgCLUE) | no run record yet | — | "
          "[kgclue.md](docs/results/kgclue.md) |") in text
  assert text.endswith("More text.\n")
  assert report.main(["--check", "--out", str(out), "--readme", str(readme)]) == 0


def test_check_names_the_page_and_line_that_differ(tmp_path, docs, capsys):
  out, readme = docs
  report.main([_workdir(str(tmp_path / "run")), "--out", str(out), "--readme", str(readme)])
  page = (out / "logreg.md").read_text().splitlines()
  line = next(i for i, text in enumerate(page) if "| iris |" in text)
  page[line] = page[line].replace("**holds**", "**fails**")
  (out / "logreg.md").write_text("\n".join(page) + "\n")
  capsys.readouterr()
  assert report.main(["--check", "--out", str(out), "--readme", str(readme)]) == 1
  err = capsys.readouterr().err
  assert f"logreg.md:{line + 1}: differs from its records" in err and "**fails**" in err


def test_records_are_named_by_config_and_variant_and_smoke_runs_are_refused(tmp_path, docs, capsys):
  out, readme = docs
  assert report.main([_workdir(str(tmp_path / "full"), variant="full"), "--out", str(out),
                      "--readme", str(readme)]) == 0
  assert (out / "records" / "logreg-full").is_dir()
  assert report.main([_workdir(str(tmp_path / "smoke"), variant="smoke"), "--out", str(out),
                      "--readme", str(readme)]) == 2
  assert "a smoke run is not a result" in capsys.readouterr().err
  assert not (out / "records" / "logreg-smoke").exists()
  assert report.main([str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_a_run_without_claims_or_provenance_gets_them_from_the_current_code(tmp_path, docs):
  out, readme = docs
  run_dir = _workdir(str(tmp_path / "old"), with_claims=False, with_provenance=False, experiment="mlp")
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme), "--name", "mlp-old"]) == 0
  provenance = json.loads((out / "records" / "mlp-old" / "provenance.json").read_text())
  assert provenance["git"]["commit"] is None and "no provenance.json" in provenance["git"]["why"]
  assert provenance["claims_computed_by"]["by"] == "python -m experiments.report"
  assert json.loads((out / "records" / "mlp-old" / "claims.json").read_text()) == []
  page = (out / "trainer.md").read_text()  # mlp's page
  assert "no commit (the run wrote no provenance.json (older code))" in page and "This run states no claims." in page


def test_results_tables_group_rows_that_share_columns():
  lines = report.results_tables({"iris": {"full": {"analytic": {"test_acc": 1.0, "fit_s": 0.1},
                                                   "mle": {"test_acc": 0.1053, "steps": 35},
                                                   "intervals": {"a-b": [0.1, 0.2]}}},
                                 "rows": [{"n": 1, "t": 0.5}, {"n": 2, "t": 0.25}]})
  text = "\n".join(lines)
  assert "| analytic | 1 | 0.1 |  |" in text and "| mle | 0.1053 |  | 35 |" in text
  assert "*iris / full*" in text and "| intervals | [0.1, 0.2] |" in text
  assert "| 0 | 1 | 0.5 |" in text and "| 1 | 2 | 0.25 |" in text


def test_the_committed_pages_match_their_records():
  """What CI runs: every page and the README equal their re-rendering from docs/results/records/."""
  assert report.check(os.path.join(report.REPO, "docs", "results"), os.path.join(report.REPO, "README.md")) == []


def test_a_record_can_be_recorded_again_with_recomputed_claims(tmp_path, docs):
  out, readme = docs
  run_dir = _workdir(str(tmp_path / "run"), experiment="mlp")
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme), "--name", "mlp"]) == 0
  record = out / "records" / "mlp"
  assert len(json.loads((record / "claims.json").read_text())) == 2  # as the run wrote them
  assert report.main([str(record), "--out", str(out), "--readme", str(readme), "--name", "mlp",
                      "--recompute-claims"]) == 0
  assert json.loads((record / "claims.json").read_text()) == []     # experiments/mlp.py states none
  assert json.loads((record / "provenance.json").read_text())["git"]["commit"] == COMMIT


def test_nan_in_results_is_recorded_as_null_and_a_failed_record_keeps_the_old_one(tmp_path, docs):
  out, readme = docs
  run_dir = _workdir(str(tmp_path / "run"))
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) == 0
  old = (out / "records" / "logreg" / "results.json").read_text()
  # A run that resumed at its last step and trained none: steps per second is NaN.
  results = json.load(open(os.path.join(run_dir, "results.json")))
  json.dump({**results, "steps_per_second": float("nan")}, open(os.path.join(run_dir, "results.json"), "w"))
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) == 0
  assert json.loads((out / "records" / "logreg" / "results.json").read_text())["steps_per_second"] is None
  # A record that cannot be written (a claim that fails its check) leaves the previous record whole.
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) == 0
  good = (out / "records" / "logreg" / "results.json").read_text()
  bad_claims = [{"id": "x"}]
  json.dump(bad_claims, open(os.path.join(run_dir, "claims.json"), "w"))
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) != 0
  assert (out / "records" / "logreg" / "results.json").read_text() == good != old
  assert sorted(os.listdir(out / "records")) == ["logreg"]


def test_the_readme_counts_the_verdicts_of_a_mixed_claim(tmp_path, docs):
  out, readme = docs
  run_dir = _workdir(str(tmp_path / "run"))
  wine = claims.claim("better", "1", "analytic beats MLE", metric="test accuracy difference", value=-0.2,
                      interval=[-0.3, -0.1], dataset="wine", detail="wine")
  iris = claims.read(run_dir)[0]
  claims.write(run_dir, [iris, wine, claims.summarize([iris, wine])])
  assert report.main([run_dir, "--out", str(out), "--readme", str(readme)]) == 0
  assert "| 1 | **better**: analytic beats MLE | **mixed** | holds 1, fails 1 |" in readme.read_text()
