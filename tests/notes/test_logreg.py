"""Note 1: the analytic solution of logistic regression, and its experiment."""

import dataclasses
import json
import os

import numpy as np
import pytest

from lmsys import data
from lmsys.notes import logreg
from tests import helpers


def _gaussian(dim=6, num_classes=3, n=4000, seed=0, separation=1.5):
  problem = logreg.gaussian_problem(dim, num_classes, separation, seed=seed)
  return problem, logreg.sample_gaussian(problem, n, seed + 1), logreg.sample_gaussian(problem, 20000, seed + 2)


def test_matches_sklearn_lda_predictions():
  from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
  _, (x, y), (xt, yt) = _gaussian(dim=10, num_classes=4)
  w, b = logreg.fit_analytic(x, y, shrinkage=1e-6)
  ours = np.asarray(logreg.logits(xt, w, b))
  lda = LinearDiscriminantAnalysis(solver="svd").fit(x, y)
  assert np.mean(ours.argmax(1) == lda.predict(xt)) > 0.998
  ours_logp = ours - np.logaddexp.reduce(ours, axis=1, keepdims=True)
  np.testing.assert_allclose(ours_logp, lda.predict_log_proba(xt), atol=2e-2)


def test_matches_the_notes_raw_space_formula():
  """Sigma = S + m^T m - sum_i p_i mu_i^T mu_i (note 1), computed in float64 without whitening."""
  _, (x, y), (xt, _) = _gaussian(dim=5, num_classes=3, n=3000, seed=3)
  x64, k = x.astype(np.float64), 3
  p = np.bincount(y, minlength=k) / len(y)
  m = x64.mean(0, keepdims=True)
  mu = np.stack([x64[y == i].mean(0) for i in range(k)])
  s = np.cov(x64.T, bias=True)
  sigma = s + m.T @ m - (mu.T * p) @ mu
  inv = np.linalg.inv(sigma)
  ref = xt @ (inv @ mu.T) + np.log(p) - 0.5 * np.sum(mu @ inv * mu, axis=1)
  w, b = logreg.fit_analytic(x, y, shrinkage=1e-7)
  ours = np.asarray(logreg.logits(xt, w, b), np.float64)
  log_softmax = lambda a: a - np.logaddexp.reduce(a, axis=1, keepdims=True)
  np.testing.assert_allclose(log_softmax(ours), log_softmax(ref), atol=2e-3)


def test_binary_and_softmax_forms_agree():
  _, (x, y), (xt, _) = _gaussian(dim=8, num_classes=2, seed=5)
  w2, b2 = logreg.fit_analytic(x, y, num_classes=2)
  w_bin, b_bin = logreg.fit_analytic_binary(x, y)
  w_diff, b_diff = logreg.binary_form(w2, b2)
  np.testing.assert_allclose(np.asarray(w_diff), np.asarray(w_bin), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(float(b_diff), float(b_bin), rtol=1e-3, atol=1e-4)
  logit_diff = np.diff(np.asarray(logreg.logits(xt, w2, b2)), axis=1)[:, 0]
  np.testing.assert_allclose(logit_diff, xt @ np.asarray(w_bin) + float(b_bin), rtol=1e-3, atol=2e-3)


def test_near_bayes_optimal_on_shared_covariance_gaussians():
  problem, (x, y), (xt, yt) = _gaussian(dim=20, num_classes=5, n=20000, seed=7, separation=1.0)
  w, b = logreg.fit_analytic(x, y)
  ours = logreg.evaluate(logreg.logits(xt, w, b), yt)
  bayes = logreg.evaluate(logreg.bayes_logits(xt, problem), yt)
  assert 0.5 < bayes["accuracy"] < 0.97  # a problem where mistakes are possible
  assert ours["accuracy"] > bayes["accuracy"] - 0.01
  assert ours["log_loss"] < bayes["log_loss"] + 0.02


def test_invariant_to_feature_units_and_robust_when_singular():
  _, (x, y), (xt, yt) = _gaussian(dim=6, num_classes=3, seed=11)
  scale = np.array([1e-3, 1.0, 1e3, 5.0, 1e2, 0.1], np.float32)
  w, b = logreg.fit_analytic(x, y)
  ws, bs = logreg.fit_analytic(x * scale + 7.0, y)
  agree = np.mean(np.asarray(logreg.logits(xt, w, b)).argmax(1)
                  == np.asarray(logreg.logits(xt * scale + 7.0, ws, bs)).argmax(1))
  assert agree > 0.995
  # Fewer rows than features, a constant feature and a duplicated one: still finite and useful.
  few = np.concatenate([x[:30], np.ones((30, 1), np.float32), x[:30, :1]], axis=1)
  few_test = np.concatenate([xt, np.ones((len(xt), 1), np.float32), xt[:, :1]], axis=1)
  few = np.concatenate([few, np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)], axis=1)
  few_test = np.concatenate([few_test, np.random.default_rng(1).normal(size=(len(xt), 40)).astype(np.float32)], 1)
  w, b = logreg.fit_analytic(few, y[:30], num_classes=3)
  logits = np.asarray(logreg.logits(few_test, w, b))
  assert np.isfinite(logits).all() and np.mean(logits.argmax(1) == yt) > 0.5


def test_absent_class_is_never_predicted():
  """An absent class gets probability 0 (logit -inf), and the other classes' rule is the fit without it.
  (It used to sit at the train mean with the prior of half a sample: a catch-all class.)"""
  _, (x, y), (xt, _) = _gaussian(dim=4, num_classes=3, seed=2)
  keep = y != 1
  for shrinkage in (1e-3, "auto"):
    w, b = logreg.fit_analytic(x[keep], y[keep], num_classes=3, shrinkage=shrinkage)
    logits = np.asarray(logreg.logits(xt, w, b))
    assert np.isneginf(logits[:, 1]).all() and np.isfinite(logits[:, [0, 2]]).all()
    w2, b2 = logreg.fit_analytic(x[keep], y[keep] // 2, num_classes=2, shrinkage=shrinkage)
    np.testing.assert_allclose(logits[:, [0, 2]], np.asarray(logreg.logits(xt, w2, b2)), rtol=1e-5, atol=1e-4)
    evaluated = logreg.evaluate(logits, np.where(np.arange(len(xt)) % 2, 0, 2))
    assert np.isfinite(evaluated["log_loss"])


def test_fit_is_jitted_once_per_shape():
  _, (x, y), _ = _gaussian(dim=4, num_classes=3, seed=4)
  x_shifted, x_scaled = x + 1.0, x * 2.0
  with helpers.xla_compilations() as names:
    logreg.fit_analytic(x, y)
    logreg.fit_analytic(x, y, shrinkage="auto")
    first = list(names)
    logreg.fit_analytic(x_shifted, y, shrinkage=1e-2)  # new values, same shapes: no recompilation
    logreg.fit_analytic(x_scaled, y, shrinkage="auto")
  assert "_fit_softmax" in first and "_fit_auto" in first
  assert [n for n in names[len(first):] if n.startswith("_fit")] == []


# ---------------------------------------------------------------- shrinkage="auto"

def _log_softmax(a):
  a = np.asarray(a, np.float64)
  return a - np.logaddexp.reduce(a, axis=1, keepdims=True)


def _hard_problem(seed=0, class_constant=True):
  """Unequal units and offsets, a feature constant overall, one constant within class 0 only
  (unless class_constant=False), a duplicated feature, and a class with fewer rows than features."""
  problem, (x, y), (xt, yt) = _gaussian(dim=12, num_classes=4, n=400, seed=seed, separation=1.0)
  keep = (y != 3) | (np.cumsum(y == 3) <= 8)          # class 3: 8 rows < 16 features
  x, y = x[keep], y[keep]
  scale = np.geomspace(1e-2, 1e2, 12).astype(np.float32)
  x, xt = x * scale + 50.0, xt * scale + 50.0
  extra = lambda a, labels: np.concatenate(
      [a, np.full((len(a), 1), 0.1, np.float32), a[:, :1]]
      + ([np.where(labels[:, None] == 0, 3.0, a[:, 1:2] + 1)] if class_constant else []), axis=1).astype(np.float32)
  x, xt = extra(x, y), extra(xt, yt)
  return x, y, xt, yt


def test_auto_intensities_equal_sklearn_ledoit_wolf_per_class():
  """sklearn's LDA(shrinkage="auto") is ledoit_wolf of each class's StandardScaler'd rows."""
  from sklearn.covariance import ledoit_wolf
  from sklearn.preprocessing import StandardScaler
  x, y, _, _ = _hard_problem()
  ours = logreg.auto_shrinkage(x, y, num_classes=4)
  ref = [ledoit_wolf(StandardScaler().fit_transform(x[y == k].astype(np.float64)))[1] for k in range(4)]
  assert 0.01 < min(ref) and max(ref) < 0.99   # interior intensities, not clipped ones
  # float32 moments against float64: the intensity is a ratio of O(1) sums, ~1e-7 relative error.
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
  # An absent class gets intensity 0; the others are unchanged.
  np.testing.assert_allclose(logreg.auto_shrinkage(x, y, num_classes=5)[:4], ours, rtol=1e-6, atol=1e-7)
  assert logreg.auto_shrinkage(x, y, num_classes=5)[4] == 0


def test_auto_matches_sklearn_lda_lsqr_auto():
  """Same rule as LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), computed in float32
  against sklearn's float64. Tolerance: Ledoit-Wolf keeps Sigma well conditioned in standardised
  units (condition number <= ~1e3 here), so float32 rounding moves logits by ~1e-5 relative; the
  largest logit gaps are ~100 nats, so log-probabilities are compared to 1e-2 nats absolute and
  5e-4 relative to the logit scale, and a prediction may differ only where sklearn's top two classes
  are within 1e-2 nats (a tie at float32 resolution).

  Units: on standardised input (the experiment's) the two agree everywhere. On raw input they agree
  except for a feature constant within a class, whose shrinkage target is 1 raw unit in sklearn and
  1 train std here (module docstring): the raw-input case below has none."""
  from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
  x, y, xt, yt = _hard_problem()
  standardised = data.standardize(x, xt)
  _, (xr, yr), (xrt, yrt) = _gaussian(dim=12, num_classes=4, n=300, seed=21)
  raw_scale = np.geomspace(1e-2, 1e2, 12).astype(np.float32)
  raw = (xr * raw_scale + 50.0, xrt * raw_scale + 50.0)
  for (x, xt), y in [(standardised, y), (raw, yr)]:
    x, xt = x.astype(np.float32), xt.astype(np.float32)
    w, b = logreg.fit_analytic(x, y, shrinkage="auto")
    ours = _log_softmax(logreg.logits(xt, w, b))
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x.astype(np.float64), y)
    ref = lda.predict_log_proba(xt.astype(np.float64))
    top2 = np.sort(ref, axis=1)[:, -2:]
    differ = ours.argmax(1) != ref.argmax(1)
    assert np.all(top2[differ, 1] - top2[differ, 0] < 1e-2) and differ.mean() < 1e-3
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, atol=max(1e-2, 5e-4 * scale))
    coef = (lda.coef_[1:] - lda.coef_[:1]).T
    np.testing.assert_allclose(np.asarray(w[:, 1:] - w[:, :1]), coef, rtol=0, atol=1e-4 * np.abs(coef).max())
  # Binary: sklearn keeps one coefficient vector; so does binary_form.
  _, (x, y), (xt, _) = _gaussian(dim=30, num_classes=2, n=120, seed=9)
  w, b = logreg.fit_analytic_binary(x, y, shrinkage="auto")
  lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x.astype(np.float64), y)
  np.testing.assert_allclose(xt @ np.asarray(w) + float(b), lda.decision_function(xt.astype(np.float64)),
                             rtol=1e-4, atol=1e-4)


def test_auto_single_row_class_matches_sklearn():
  """A class with one row (iflytek has some): its covariance is 0 and its intensity 0, as in sklearn."""
  import warnings

  from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
  _, (x, y), (xt, _) = _gaussian(dim=6, num_classes=3, n=200, seed=4)
  x, y = np.concatenate([x, x[:1] + 1]), np.concatenate([y, [3]])
  x, xt = (a.astype(np.float32) for a in data.standardize(x, xt))
  assert logreg.auto_shrinkage(x, y)[3] == 0
  w, b = logreg.fit_analytic(x, y, shrinkage="auto")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "Only one sample available"
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x.astype(np.float64), y)
  np.testing.assert_allclose(_log_softmax(logreg.logits(xt, w, b)), lda.predict_log_proba(xt.astype(np.float64)),
                             atol=1e-3)
  _assert_same_fit((w, b), logreg.fit_analytic_streaming(_batches(x, y, [7]), 4, "auto"), xt, logp_atol=1e-4)


def test_auto_repairs_the_floor_where_n_is_close_to_d():
  """The failure the fixed floor has on Fashion-MNIST 1k, on data where the Gaussian model holds."""
  problem, (x, y), (xt, yt) = _gaussian(dim=80, num_classes=3, n=120, seed=13, separation=1.0)
  bayes = logreg.evaluate(logreg.bayes_logits(xt, problem), yt)
  floor = logreg.evaluate(logreg.logits(xt, *logreg.fit_analytic(x, y)), yt)
  auto = logreg.evaluate(logreg.logits(xt, *logreg.fit_analytic(x, y, shrinkage="auto")), yt)
  assert auto["log_loss"] < floor["log_loss"] / 2 and auto["accuracy"] > floor["accuracy"]
  assert auto["accuracy"] > bayes["accuracy"] - 0.15


# ---------------------------------------------------------------- streaming

def _batches(x, y, sizes):
  """Uneven batches: sizes cycle (a 1-row batch and batches missing classes included)."""
  out, i, j = [], 0, 0
  while i < len(y):
    out.append((x[i:i + sizes[j % len(sizes)]], y[i:i + sizes[j % len(sizes)]]))
    i, j = i + sizes[j % len(sizes)], j + 1
  return out


def _assert_same_fit(a, b, xt, logp_atol):
  (wa, ba), (wb, bb) = a, b
  la, lb = _log_softmax(logreg.logits(xt, wa, ba)), _log_softmax(logreg.logits(xt, wb, bb))
  assert np.mean(la.argmax(1) == lb.argmax(1)) > 0.999
  np.testing.assert_allclose(la, lb, rtol=1e-5, atol=logp_atol)  # rtol: float32 rounding of large logits
  wa, wb = np.asarray(wa), np.asarray(wb)
  np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-3 * np.abs(wa).max())
  ba, bb = np.asarray(ba), np.asarray(bb)
  np.testing.assert_array_equal(np.isneginf(ba), np.isneginf(bb))  # absent classes
  finite = np.isfinite(ba)
  np.testing.assert_allclose(ba[finite], bb[finite], rtol=1e-3, atol=1e-3 * max(1.0, np.abs(ba[finite]).max()))


@pytest.mark.slow
def test_streaming_equals_in_memory_fit():
  """One pass over batches gives fit_analytic on the whole set: weights, bias and predictions, with
  the fixed floor and with "auto", with unequal units, a large offset, constant features and a
  class smaller than the dimension. The streaming moments are float64 and the in-memory ones
  float32, so they differ by float32 rounding (1e-6 relative) times the conditioning of the solve."""
  for class_constant, shrinkages in ((False, (1e-3, 0.1, "auto")), (True, (0.1, "auto"))):
    x, y, xt, _ = _hard_problem(seed=2, class_constant=class_constant)
    batches = _batches(x, y, [1, 37, 5, 120])
    for shrinkage in shrinkages:
      _assert_same_fit(logreg.fit_analytic(x, y, 4, shrinkage=shrinkage),
                       logreg.fit_analytic_streaming(batches, 4, shrinkage=shrinkage), xt, logp_atol=5e-3)
  # (Not the floor 1e-3 with the class-constant feature: the within-class variance of that feature
  # is ~1e-6 of its total, so that Sigma is too ill-conditioned for float32; the in-memory fit
  # itself is 10% away from a float64 solve there, and the streaming one as well.)
  # A larger, well conditioned problem: agreement to ~1e-5.
  _, (x, y), (xt, _) = _gaussian(dim=20, num_classes=5, n=20000, seed=17)
  batches = _batches(x, y, [4096, 999])
  for shrinkage in (1e-3, "auto"):
    _assert_same_fit(logreg.fit_analytic(x, y, 5, shrinkage=shrinkage),
                     logreg.fit_analytic_streaming(iter(batches), 5, shrinkage=shrinkage), xt, logp_atol=1e-4)


def test_streaming_absent_class_order_and_purity():
  _, (x, y), (xt, _) = _gaussian(dim=5, num_classes=3, n=600, seed=19)
  keep = y != 1
  x, y = x[keep], y[keep]
  for shrinkage in (1e-3, "auto"):
    streamed = logreg.fit_analytic_streaming(_batches(x, y, [50]), 3, shrinkage=shrinkage)
    assert np.isfinite(np.asarray(streamed[0])).all() and np.isneginf(np.asarray(streamed[1])[1])
    _assert_same_fit(logreg.fit_analytic(x, y, 3, shrinkage=shrinkage), streamed, xt, logp_atol=1e-4)
    # Batches in another order (other shifts): the same fit.
    perm = np.random.default_rng(0).permutation(len(y))
    _assert_same_fit(streamed, logreg.fit_analytic_streaming(_batches(x[perm], y[perm], [64]), 3, shrinkage),
                     xt, logp_atol=1e-4)
  # moments_update is pure: the moments it was given are unchanged.
  m0 = logreg.moments_update(logreg.moments_init(3, 5, auto=True), x[:10], y[:10])
  copy = {f.name: None if getattr(m0, f.name) is None else np.array(getattr(m0, f.name))
          for f in dataclasses.fields(m0)}
  m1 = logreg.moments_update(m0, x[10:], y[10:])
  assert m1.num_rows == len(y) and m0.num_rows == 10
  for name, value in copy.items():
    assert value is None or np.array_equal(getattr(m0, name), value), name


def test_streaming_rejects_bad_input():
  m = logreg.moments_init(3, 4)
  with pytest.raises(ValueError, match="labels"):
    logreg.moments_update(m, np.zeros((2, 4)), np.array([0, 3]))
  with pytest.raises(ValueError, match="expected x"):
    logreg.moments_update(m, np.zeros((2, 5)), np.array([0, 1]))
  with pytest.raises(ValueError, match="auto=True"):
    logreg.fit_from_moments(logreg.moments_update(m, np.ones((2, 4)), np.array([0, 1])), shrinkage="auto")
  with pytest.raises(ValueError, match="no batches"):
    logreg.fit_analytic_streaming([], 3)
  with pytest.raises(ValueError, match="shrinkage"):
    logreg.fit_analytic(np.ones((3, 2)), np.array([0, 1, 0]), shrinkage="ledoit")


# ---------------------------------------------------------------- the comparison's pieces

def test_softmax_gradient_and_relative_gradient():
  # Two rows x = 1 and -1 of classes 0 and 1, logits 0: softmax - onehot = [[-.5, .5], [.5, -.5]],
  # so d/dW = x^T (P - Y) / 2 = [-0.5, 0.5] and d/db = [0, 0].
  x, y = np.array([[1.0], [-1.0]]), np.array([0, 1])
  np.testing.assert_allclose(logreg.softmax_gradient(x, np.zeros((2, 2)), y), [-0.5, 0.5, 0.0, 0.0])
  assert logreg.relative_gradient(x, np.zeros((2, 2)), y) == pytest.approx(1.0)
  # Logits (t, -t) for row 1 and (-t, t) for row 2: P - Y = [[-s, s], [s, -s]] with s = 1 / (1 + e^{2t}).
  t = 2.0
  s = 1 / (1 + np.exp(2 * t))
  logits = np.array([[t, -t], [-t, t]])
  np.testing.assert_allclose(logreg.softmax_gradient(x, logits, y), [-s, s, 0.0, 0.0], atol=1e-15)
  assert logreg.relative_gradient(x, logits, y) == pytest.approx(2 * s)


def test_absent_classes_get_the_row_maximum_minus_30_and_sklearn_logits_fill_minus_inf():
  logits = np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
  out = logreg.absent_at_minus_30(logits, np.array([True, False, True]))
  np.testing.assert_array_equal(out, [[1.0, -28.0, 2.0], [0.0, -27.0, 3.0]])

  class Binary:  # scikit-learn's binary decision_function: the log-odds of classes_[1]
    classes_ = np.array([0, 2])
    def decision_function(self, xs):
      return np.array([1.5, -2.0])
  np.testing.assert_array_equal(logreg.sklearn_logits(Binary(), np.zeros((2, 1)), 3),
                                [[0.0, -np.inf, 1.5], [0.0, -np.inf, -2.0]])


# ---------------------------------------------------------------- experiment

@pytest.mark.slow
def test_smoke_config_end_to_end(tmp_path):
  from experiments import run
  workdir = str(tmp_path / "run")
  assert run.main(["--config", "configs/logreg.py:smoke", "--workdir", workdir]) == 0
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert set(results) == {"iris", "synthetic"} and set(results["synthetic"]) == {"full", "n200"}
  row = results["synthetic"]["full"]
  assert {"analytic", "analytic_auto", "mle", "mle_long", "sklearn_logreg", "sklearn_lda", "sklearn_lda_auto",
          "bayes"} <= set(row)
  assert row["analytic"]["test_acc"] > row["bayes"]["test_acc"] - 0.05
  for per in results.values():  # the same rule as scikit-learn's shrunk LDA, on every set and regime
    for r in per.values():
      assert abs(r["analytic_auto"]["test_acc"] - r["sklearn_lda_auto"]["test_acc"]) < 0.005
      assert abs(r["analytic_auto"]["test_logloss"] - r["sklearn_lda_auto"]["test_logloss"]) < 1e-3
  with open(os.path.join(workdir, "claims.json")) as f:
    records = json.load(f)
  ids = {(r["id"], r["dataset"]) for r in records}
  assert {("close_full", "iris"), ("close_full", "synthetic"), ("close_full", None), ("better_small", "synthetic/n200"),
          ("smaller_gap", None), ("close_full_note_protocol", "iris"), ("bayes", "synthetic")} <= ids
  # A smoke run judges nothing, but the rule's verdict stays in the detail.
  assert {r["verdict"] for r in records} == {"not measured"}
  iris = next(r for r in records if (r["id"], r["dataset"]) == ("close_full", "iris"))
  assert iris["baseline"]["converged"] and iris["baseline"]["name"] in ("mle_long", "sklearn_logreg")
  assert iris["value"] == pytest.approx(results["iris"]["full"]["analytic"]["test_acc"]
                                        - results["iris"]["full"][iris["baseline"]["name"]]["test_acc"])
  # The note's 10-epoch MLE (2 epochs in smoke) is its own row and never a converged baseline here.
  protocol = next(r for r in records if (r["id"], r["dataset"]) == ("close_full_note_protocol", "iris"))
  assert protocol["baseline"]["name"] == "mle" and not protocol["baseline"]["converged"]
  assert "the rule gives" not in protocol["detail"] and "did not converge" in protocol["detail"]
  assert results["iris"]["full"]["analytic"]["test_acc"] > 0.9
  assert os.path.isfile(os.path.join(workdir, "figures", "accuracy.png"))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    splits = {json.loads(line)["split"] for line in f}
  assert "iris/full/analytic" in splits and "iris_full_mle/train" in splits


def test_full_config_names_missing_data_before_compute(tmp_path, capsys):
  from experiments import run
  workdir = str(tmp_path / "never")
  code = run.main(["--config", "configs/logreg.py:full", "--workdir", workdir,
                   f"--config.data.fashion_mnist_dir={tmp_path / 'no_fashion'}"])
  assert code == 2 and not os.path.exists(workdir)
  assert "no_fashion" in capsys.readouterr().err
  code = run.main(["--config", "configs/logreg.py:full", "--workdir", workdir,
                   f"--config.data.data_dir={tmp_path / 'no_root'}"])
  assert code == 2 and not os.path.exists(workdir)
  err = capsys.readouterr().err
  assert "fewclue/eprstmt" in err and "no_root" in err and len(err.strip().splitlines()) == 1
