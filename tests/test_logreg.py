"""Note 1: the analytic solution of logistic regression, and its experiment."""

import json
import os

import numpy as np

from lmsys import logreg


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


def test_absent_class_gets_finite_logits():
  _, (x, y), (xt, _) = _gaussian(dim=4, num_classes=3, seed=2)
  keep = y != 1
  w, b = logreg.fit_analytic(x[keep], y[keep], num_classes=3)
  logits = np.asarray(logreg.logits(xt, w, b))
  assert np.isfinite(logits).all() and (logits.argmax(1) != 1).all()


def test_fit_is_jitted_once_per_shape():
  _, (x, y), _ = _gaussian(dim=4, num_classes=3, seed=4)
  logreg.fit_analytic(x, y)
  before = logreg._fit_softmax._cache_size()
  logreg.fit_analytic(x + 1.0, y, shrinkage=1e-2)  # new values, same shapes: no recompilation
  assert logreg._fit_softmax._cache_size() == before


# ---------------------------------------------------------------- experiment

def test_smoke_config_end_to_end(tmp_path):
  from experiments import run
  workdir = str(tmp_path / "run")
  assert run.main(["--config", "configs/logreg.py:smoke", "--workdir", workdir]) == 0
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert set(results) == {"iris", "synthetic"} and set(results["synthetic"]) == {"full", "n200"}
  row = results["synthetic"]["full"]
  assert {"analytic", "mle", "mle_long", "sklearn_logreg", "sklearn_lda", "bayes"} <= set(row)
  assert row["analytic"]["test_acc"] > row["bayes"]["test_acc"] - 0.05
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
