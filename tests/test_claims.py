"""lmsys.claims: the verdict rule on literal cases, summaries, intervals, the record format."""

import json

import numpy as np
import pytest

from lmsys import claims


@pytest.mark.parametrize("value, interval, kind, target, margin, expected", [
    # higher: the whole interval above the target holds, below fails, covering it is noise.
    (0.05, [0.01, 0.09], "higher", 0.0, 0.0, "holds"),
    (-0.05, [-0.09, -0.01], "higher", 0.0, 0.0, "fails"),
    (0.02, [-0.01, 0.05], "higher", 0.0, 0.0, "within noise"),
    (0.02, [0.0, 0.05], "higher", 0.0, 0.0, "within noise"),    # touching the target is not above it
    (0.6, [0.55, 0.65], "higher", 0.5, 0.0, "holds"),
    # lower: the mirror.
    (-0.05, [-0.09, -0.01], "lower", 0.0, 0.0, "holds"),
    (0.05, [0.01, 0.09], "lower", 0.0, 0.0, "fails"),
    (0.0, [-0.01, 0.01], "lower", 0.0, 0.0, "within noise"),
    # close with margin 0.02: inside holds, wholly outside fails, straddling is noise.
    (0.005, [-0.01, 0.015], "close", 0.0, 0.02, "holds"),
    (0.05, [0.03, 0.07], "close", 0.0, 0.02, "fails"),
    (-0.05, [-0.07, -0.03], "close", 0.0, 0.02, "fails"),
    (0.015, [0.0, 0.03], "close", 0.0, 0.02, "within noise"),
    # bounds can only be refuted.
    (0.3, [0.25, 0.35], "at_most", 0.2, 0.0, "fails"),
    (0.3, [0.15, 0.35], "at_most", 0.2, 0.0, "holds"),
    (0.01, [0.0, 0.02], "at_most", 0.2, 0.0, "holds"),
    (0.1, [0.05, 0.15], "at_least", 0.2, 0.0, "fails"),
    (0.1, [0.05, 0.25], "at_least", 0.2, 0.0, "holds"),
    # no interval: the value stands for it.
    (3.0, None, "higher", 0.0, 0.0, "holds"),
    (-3.0, None, "higher", 0.0, 0.0, "fails"),
    (0.0, None, "higher", 0.0, 0.0, "within noise"),
    (1525.0, None, "close", 1536.0, 0.1 * 1536, "holds"),
    (413.0, None, "close", 1536.0, 0.1 * 1536, "fails"),
    # no value.
    (None, None, "higher", 0.0, 0.0, "not measured"),
    (float("nan"), [0.0, 1.0], "higher", 0.0, 0.0, "not measured"),
])
def test_verdict_rule(value, interval, kind, target, margin, expected):
  assert claims.verdict(value, interval, kind=kind, target=target, margin=margin) == expected


def test_a_verdict_never_rests_on_a_baseline_that_did_not_converge_or_is_at_chance():
  converged = claims.baseline("mle_long", 0.868, True, chance=0.342)
  assert claims.verdict(0.1, [0.05, 0.15], baseline=converged) == "holds"
  # The note's 10-epoch MLE on iris: 35 steps, 10.5% test accuracy.
  short = claims.baseline("mle", 0.105, False, chance=0.342)
  assert claims.verdict(0.1, [0.05, 0.15], baseline=short) == "not measured"
  at_chance = claims.baseline("mle", 0.342, True, chance=0.342)
  assert claims.verdict(0.1, [0.05, 0.15], baseline=at_chance) == "not measured"
  record = claims.claim("c", "1", "analytic beats MLE", metric="accuracy difference", value=0.1,
                        interval=[0.05, 0.15], baseline=short, detail="iris")
  assert record["verdict"] == "not measured"
  assert record["detail"] == "baseline mle did not converge; iris"
  record = claims.claim("c", "1", "x", metric="m", value=0.1, baseline=at_chance)
  assert record["detail"] == "baseline mle scores 0.342, at or below chance 0.342"


def test_the_strongest_usable_baseline_is_compared_with():
  mle = claims.baseline("mle", 0.105, False, chance=0.342)          # the note's 10 epochs on iris
  mle_long = claims.baseline("mle_long", 0.868, True, chance=0.342)
  sklearn = claims.baseline("sklearn_logreg", 0.895, True, chance=0.342)
  assert claims.strongest_baseline([mle, mle_long, sklearn])["name"] == "sklearn_logreg"
  assert claims.strongest_baseline([mle, mle_long])["name"] == "mle_long"
  # None usable: the first, so that the verdict says why it measures nothing.
  assert claims.strongest_baseline([mle, claims.baseline("x", 0.9, False)])["name"] == "mle"
  assert claims.strongest_baseline([]) is None


def test_unknown_kind_is_an_error():
  with pytest.raises(ValueError, match="unknown claim kind 'bigger'"):
    claims.verdict(1.0, kind="bigger")


@pytest.mark.parametrize("verdicts, expected", [
    (["holds", "holds"], "holds"),
    (["fails", "fails", "not measured"], "fails"),
    (["holds", "fails"], "mixed"),
    (["holds", "within noise"], "mixed"),
    (["within noise", "within noise"], "within noise"),
    (["not measured", "not measured"], "not measured"),
    ([], "not measured"),
])
def test_combine(verdicts, expected):
  assert claims.combine(verdicts) == expected


def test_summarize_counts_the_verdicts_per_set():
  rows = [claims.claim("few", "1", "better with few samples", metric="accuracy difference", value=v,
                       interval=ci, dataset=name)
          for name, v, ci in (("digits", 0.04, [0.01, 0.07]), ("synthetic", 0.012, [0.004, 0.02]),
                              ("wine", 0.0, [-0.02, 0.02]))]
  summary = claims.summarize(rows, detail="against mle_long")
  assert summary["dataset"] is None and summary["verdict"] == "mixed"
  assert summary["value"] == pytest.approx((0.04 + 0.012 + 0.0) / 3)
  assert summary["detail"] == "holds on 2 (digits, synthetic); within noise on 1 (wine). against mle_long"
  assert summary["metric"] == "accuracy difference (mean over 3 sets)"


def test_paired_bootstrap_interval():
  # 1000 examples, a right on the first 600, b on the first 300 and 600-799: a - b is +1 on
  # 300 rows, -1 on 200, so its mean is 0.1 and its variance 0.5 - 0.01 = 0.49; the standard
  # error is sqrt(0.49 / 1000) = 0.0221 and the 95% interval 0.1 +- 1.96 * 0.0221 = [0.0566, 0.1434].
  a = np.r_[np.ones(600), np.zeros(400)]
  b = np.r_[np.ones(300), np.zeros(300), np.ones(200), np.zeros(200)]
  lo, hi = claims.paired_bootstrap(a, b, samples=4000, seed=1)
  assert lo == pytest.approx(0.0566, abs=0.005) and hi == pytest.approx(0.1434, abs=0.005)
  assert claims.paired_bootstrap(a, a) == [0.0, 0.0]
  lo, hi = claims.paired_bootstrap(a, samples=4000)  # one mean: 0.6 +- 1.96 sqrt(0.24 / 1000) = 0.6 +- 0.0304
  assert lo == pytest.approx(0.5696, abs=0.005) and hi == pytest.approx(0.6304, abs=0.005)
  with pytest.raises(ValueError, match="non-empty"):
    claims.paired_bootstrap([])


def test_seed_and_binomial_intervals():
  # mean 0.69, sd 0.02 over 3 seeds: t(0.975, 2) = 4.303, half width 4.303 * 0.02 / sqrt(3) = 0.0497.
  lo, hi = claims.seed_interval([0.67, 0.69, 0.71])
  assert lo == pytest.approx(0.69 - 0.04969, abs=1e-4) and hi == pytest.approx(0.69 + 0.04969, abs=1e-4)
  assert claims.seed_interval([0.7]) is None
  # Clopper-Pearson for 20 of 20: [0.05 ** (1/20), 1] = [0.8316, 1].
  lo, hi = claims.binomial_interval(20, 20)
  assert lo == pytest.approx(0.8316, abs=1e-4) and hi == 1.0


def test_records_round_trip_and_are_checked(tmp_path):
  records = [claims.claim("a", "2", "x", metric="n", value=np.float32(413.0), kind="close", target=1536,
                          margin=153.6),
             claims.not_measured("b", "2", "y", "smoke run")]
  claims.write(str(tmp_path), records)
  back = claims.read(str(tmp_path))
  assert back == json.loads(json.dumps(records))
  assert back[0]["value"] == 413.0 and back[0]["verdict"] == "fails" and back[1]["verdict"] == "not measured"
  assert claims.read(str(tmp_path / "none")) is None
  bad = dict(records[0], verdict="true")
  with pytest.raises(ValueError, match="unknown verdict 'true'"):
    claims.write(str(tmp_path), [bad])
  with pytest.raises(ValueError, match="missing baseline"):
    claims.write(str(tmp_path), [{k: v for k, v in records[0].items() if k != "baseline"}])


def test_format_table_shows_claim_measured_baseline_verdict():
  record = claims.claim("few", "1", "clearly better with 1,000 samples", metric="accuracy difference",
                        value=0.0123, interval=[0.004, 0.0207], dataset="digits",
                        baseline=claims.baseline("mle_long", 0.9556, True))
  lines = claims.format_table([record]).splitlines()
  assert lines[0].split() == ["claim", "data", "measured", "[95%", "interval]", "baseline", "verdict"]
  assert "few: clearly better with 1,000 samples" in lines[2]
  assert "0.0123 [0.004, 0.0207]" in lines[2] and "mle_long 0.9556" in lines[2]
  assert lines[2].endswith("holds")


def test_a_smoke_run_measures_nothing_but_keeps_the_rules_verdict():
  records = [claims.claim("a", "1", "x", metric="m", value=0.1, interval=[0.05, 0.15], detail="digits"),
             claims.not_measured("b", "1", "y", "no data")]
  out = claims.smoke(records)
  assert [r["verdict"] for r in out] == ["not measured", "not measured"]
  assert out[0]["detail"] == "smoke run, too small to judge (the rule gives: holds); digits"
  assert out[1]["detail"] == "no data" and records[0]["verdict"] == "holds"
