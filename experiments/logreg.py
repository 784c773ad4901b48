"""Note 1: analytic logistic regression vs MLE vs scikit-learn (configs/logreg.py).

For every dataset and regime (all training rows, and `data.small_n` of them)
each method is fitted on the same standardised features (statistics from the
training rows in use) and reports train/test accuracy, test log-loss and fit
time (the analytic fits are timed after a first, compiling call, reported as
compile_s; MLE's time includes the trainer's compile and its one checkpoint).
`analytic` uses the fixed eigenvalue floor `analytic.shrinkage`; `analytic_auto`
the Ledoit-Wolf shrinkage per class that scikit-learn's
LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto") uses, which
`sklearn_lda_auto` runs (the same rule: the two should agree to float32
rounding; `sklearn_lda` is the unshrunk SVD solver).
The analytic rule is invariant to that standardisation; MLE by Adam and
the L2-regularised lbfgs fit are not, and need it to be fair.

Every method is scored from its class logits by the same exact log-softmax
(scikit-learn's through `decision_function`: its `predict_log_proba` can
underflow, and the clip at -30 used here until 2026-11-25 capped the log-loss
of its confident mistakes at 30 nats a row while the analytic rule was not
capped). A class absent from the training rows in use gets the logit
(row maximum - 30), for every method alike: it is never predicted, and a test
row of that class costs ~30 nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import data, metrics, timing, trainer
from lmsys.notes import logreg
from lmsys.config import ConfigError, check_positive_int
from lmsys.models.mlp import MLP
from lmsys.tasks import classification

METHODS = ("analytic", "analytic_auto", "mle", "mle_long", "sklearn_logreg", "sklearn_lda", "sklearn_lda_auto")


def validate(config) -> None:
  trainer.validate_config(config)
  check_positive_int(config, "data.small_n")
  check_positive_int(config, "mle.epochs")
  check_positive_int(config, "mle.long_min_steps")
  if not config.data.names:
    raise ConfigError("config key 'data.names': empty; name at least one dataset (e.g. digits, synthetic)")
  if not config.methods:
    raise ConfigError(f"config key 'methods': empty; name at least one of {', '.join(METHODS)}")
  for method in config.methods:
    if method not in METHODS:
      raise ConfigError(f"config key 'methods': unknown method {method!r} (known: {', '.join(METHODS)})")
  if not config.analytic.shrinkage > 0:
    raise ConfigError(f"config key 'analytic.shrinkage': expected > 0, got {config.analytic.shrinkage!r}")
  for name in config.data.names:
    if name == "synthetic":
      for key in ("dim", "num_classes", "num_train", "num_test"):
        check_positive_int(config, f"data.synthetic.{key}")
      continue
    try:  # names and files only: nothing is loaded or computed here
      data.check_available(name, _data_dir_for(config, name), **classification.data_options(config, name))
    except ConfigError as e:
      raise ConfigError(f"config key 'data.names': {e}") from None


def _data_dir_for(config, name):
  return (config.data.fashion_mnist_dir if name == "fashion_mnist" else config.data.data_dir) or None


def load(config, name):
  """(train, test, num_classes) with float32 x and int32 y."""
  if name == "synthetic":
    s = config.data.synthetic
    problem = logreg.gaussian_problem(s.dim, s.num_classes, s.separation, seed=config.seed)
    train = logreg.sample_gaussian(problem, s.num_train, seed=config.seed + 1)
    test = logreg.sample_gaussian(problem, s.num_test, seed=config.seed + 2)
    return ({"x": train[0], "y": train[1]}, {"x": test[0], "y": test[1]}, s.num_classes,
            {"problem": problem})
  options = dict(config.data.text) if name.startswith("fewclue/") else {}
  ds = data.load_arrays(name, _data_dir_for(config, name), seed=config.seed,
                        **classification.data_options(config, name), **options)
  return ds["train"], ds["test"], ds.num_classes, {}


# ---------------------------------------------------------------- the four methods

def fit_analytic(config, x, y, num_classes, shrinkage=None, **_):
  """Timed after a first call that compiles, so fit_s is the fit itself (compile_s separate)."""
  shrinkage = config.analytic.shrinkage if shrinkage is None else shrinkage
  fit = lambda: logreg.fit_analytic(x, y, num_classes, shrinkage=shrinkage)
  measured = timing.benchmark(fit, jit=False, repeats=1)
  w, b = fit()
  predict = lambda xs: np.asarray(logreg.logits(xs, w, b))
  predict.timing = {"fit_s": measured.best_seconds, "compile_s": measured.compile_seconds}
  return predict


def fit_sklearn_logreg(config, x, y, num_classes, **_):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  model = LogisticRegression(C=config.sklearn.C, max_iter=config.sklearn.max_iter, solver="lbfgs")
  model.fit(x, y)
  return lambda xs: _full_logits(model, xs, num_classes)


def fit_analytic_auto(config, x, y, num_classes, **kwargs):
  return fit_analytic(config, x, y, num_classes, shrinkage="auto", **kwargs)


def fit_sklearn_lda(config, x, y, num_classes, **_):
  del config
  from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # pylint: disable=g-import-not-at-top
  model = LinearDiscriminantAnalysis(solver="svd").fit(x, y)
  return lambda xs: _full_logits(model, xs, num_classes)


def fit_sklearn_lda_auto(config, x, y, num_classes, **_):
  """LDA with Ledoit-Wolf shrinkage per class (what analytic_auto reproduces)."""
  del config
  from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # pylint: disable=g-import-not-at-top
  model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
  return lambda xs: _full_logits(model, xs, num_classes)


def _full_logits(model, xs, num_classes):
  """sklearn's class logits (decision_function; binary: [0, log-odds]), -inf for classes absent from train."""
  scores = model.decision_function(xs)
  if scores.ndim == 1:
    scores = np.stack([np.zeros_like(scores), scores], axis=1)
  out = np.full((len(xs), num_classes), -np.inf)
  out[:, model.classes_] = scores
  return out


def _absent_at_minus_30(logits, present):
  """Logits of classes absent from the training rows -> row maximum - 30 (every method alike)."""
  logits = np.array(logits, np.float64)
  if not present.all():
    logits[:, ~present] = logits[:, present].max(1, keepdims=True) - 30.0
  return logits


def fit_mle(config, x, y, num_classes, *, workdir, writer, name, min_steps=0):
  """Softmax regression by the shared trainer: the note's GD baseline (`mle.epochs` epochs).

  `min_steps` > 0 trains at least that many steps (`mle_long`): on small
  training sets 10 epochs are a few hundred Adam steps, far from the MLE.
  """
  model = MLP(hidden=(), num_classes=num_classes)  # no hidden layer: softmax regression
  run_config = config.copy_and_resolve_references()
  steps = max(math.ceil(config.mle.epochs * len(y) / config.train.batch_size), min_steps)
  run_config.train.num_steps = min(config.train.num_steps, steps)

  result = trainer.train(
      run_config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, x.shape[1])))["params"],
      loss_fn=classification.make_loss_fn(model),
      batch_fn=data.make_batch_fn({"x": x, "y": y}, config.train.batch_size, config.seed),
      name=name)
  apply = jax.jit(lambda xs: model.apply({"params": result.params}, xs))
  predict = lambda xs: np.asarray(apply(jnp.asarray(xs)))
  predict.steps = result.step
  return predict


def fit_mle_long(config, x, y, num_classes, **kwargs):
  return fit_mle(config, x, y, num_classes, min_steps=config.mle.long_min_steps, **kwargs)


FITS = {"analytic": fit_analytic, "analytic_auto": fit_analytic_auto, "mle": fit_mle, "mle_long": fit_mle_long,
        "sklearn_logreg": fit_sklearn_logreg, "sklearn_lda": fit_sklearn_lda, "sklearn_lda_auto": fit_sklearn_lda_auto}


# ---------------------------------------------------------------- run

def run(config, workdir, writer) -> dict:
  results = {}
  for name in config.data.names:
    train, test, num_classes, extra = load(config, name)
    regimes = {"full": train}
    if len(train["y"]) > config.data.small_n:
      regimes[f"n{config.data.small_n}"] = data.subsample(train, config.data.small_n, config.seed)
    results[name] = {}
    for regime, rows in regimes.items():
      x, test_x = data.standardize(rows["x"], test["x"])
      x, test_x = x.astype(np.float32), test_x.astype(np.float32)
      row = {}
      for method in config.methods:
        tag = f"{name}/{regime}/{method}"
        if method == "mle_long" and "mle" in row and row["mle"]["steps"] >= config.mle.long_min_steps:
          row[method] = dict(row["mle"])  # 10 epochs already reach the minimum: the same run
          writer.write(0, tag, row[method])
          continue
        with timing.Stopwatch() as watch:
          predict = FITS[method](config, x, rows["y"], num_classes, workdir=workdir, writer=writer,
                                 name=tag.replace("/", "_"))
        fit_timing = getattr(predict, "timing", {"fit_s": watch.seconds})
        present = np.bincount(rows["y"], minlength=num_classes) > 0
        train_eval = logreg.evaluate(_absent_at_minus_30(predict(x), present), rows["y"])
        test_eval = logreg.evaluate(_absent_at_minus_30(predict(test_x), present), test["y"])
        row[method] = {"n_train": len(rows["y"]), **({"steps": predict.steps} if hasattr(predict, "steps") else {}), "train_acc": train_eval["accuracy"],
                       "test_acc": test_eval["accuracy"], "test_logloss": test_eval["log_loss"],
                       "gap": train_eval["accuracy"] - test_eval["accuracy"], **fit_timing}
        writer.write(0, tag, row[method])
      if "problem" in extra:  # the true parameters: the best any classifier can do
        bayes = logreg.evaluate(logreg.bayes_logits(test["x"], extra["problem"]), test["y"])
        row["bayes"] = {"n_train": len(rows["y"]), "test_acc": bayes["accuracy"],
                        "test_logloss": bayes["log_loss"]}
        writer.write(0, f"{name}/{regime}/bayes", row["bayes"])
      results[name][regime] = row
  metrics.save_figure(accuracy_figure(results, config.methods), workdir, "accuracy")
  return results


def summary(results) -> list[str]:
  """The note's claims, each with the numbers this run measured (printed under the table)."""
  lines = []

  def rows_with(regime, *methods):
    rows = [(name, per[regime]) for name, per in results.items() if regime in per]
    return [(n, r) for n, r in rows if all(m in r for m in methods)]

  def compare(regime, claim, method="analytic", baseline="mle", key="test_acc", label="test accuracy (points)"):
    rows = rows_with(regime, method, baseline)
    if not rows:
      return
    scale = 100 if key == "test_acc" else 1
    fmt = "+.1f" if key == "test_acc" else "+.3f"
    diffs = [scale * (r[method][key] - r[baseline][key]) for _, r in rows]
    better = sum((d > 0) if key == "test_acc" else (d < 0) for d in diffs)
    detail = ", ".join(f"{n} {d:{fmt}}" for (n, _), d in zip(rows, diffs))
    lines.append(f"{claim}: {method} - {baseline} {label} = {detail}; "
                 f"{method} ahead on {better} of {len(rows)} sets")

  small = next((r for per in results.values() for r in per if r != "full"), None)
  compare("full", "claim 'about as accurate as MLE with full data'")
  if small:
    compare(small, f"claim 'clearly better with few samples' ({small})")
  gaps = [(per[r]["analytic"]["gap"], per[r]["mle"]["gap"]) for per in results.values() for r in per
          if "analytic" in per[r] and "mle" in per[r] and "gap" in per[r]["mle"]]
  if gaps:
    smaller = sum(a < m for a, m in gaps)
    lines.append(f"claim 'smaller train-test gap': analytic's gap smaller than MLE's in {smaller} of {len(gaps)} "
                 f"(set, regime) pairs (median gap {100 * np.median([a for a, _ in gaps]):.1f} vs "
                 f"{100 * np.median([m for _, m in gaps]):.1f} points)")
  # Ledoit-Wolf shrinkage instead of the fixed floor, and the same claims with it.
  for regime in ("full",) + ((small,) if small else ()):
    compare(regime, f"auto shrinkage vs fixed floor ({regime})", "analytic_auto", "analytic")
    compare(regime, f"auto shrinkage vs fixed floor ({regime})", "analytic_auto", "analytic",
            key="test_logloss", label="test log-loss (nats; ahead = lower)")
    compare(regime, f"claim vs MLE with auto shrinkage ({regime})", "analytic_auto", "mle")
  pairs = [(n, reg, r) for n, per in results.items() for reg, r in per.items()
           if "analytic_auto" in r and "sklearn_lda_auto" in r]
  if pairs:
    acc = max(abs(r["analytic_auto"]["test_acc"] - r["sklearn_lda_auto"]["test_acc"]) for _, _, r in pairs)
    loss = max(abs(r["analytic_auto"]["test_logloss"] - r["sklearn_lda_auto"]["test_logloss"]) for _, _, r in pairs)
    lines.append(f"analytic_auto vs scikit-learn's LDA(lsqr, shrinkage='auto') (the same rule): largest difference "
                 f"over {len(pairs)} (set, regime) pairs {100 * acc:.2f} points of test accuracy, "
                 f"{loss:.4f} nats of test log-loss")
  bayes = [(n, per["full"]) for n, per in results.items() if "bayes" in per.get("full", {})]
  for name, row in bayes:
    if "analytic" in row:
      lines.append(f"{name}: where the Gaussian model is true the analytic rule reaches "
                   f"{100 * row['analytic']['test_acc']:.1f}% vs Bayes {100 * row['bayes']['test_acc']:.1f}%")
  return lines


def accuracy_figure(results, methods):
  """Test accuracy per dataset and method, one panel per regime (hatched: train accuracy)."""
  plt = metrics.pyplot()
  regimes = sorted({r for per in results.values() for r in per}, key=lambda r: r != "full")
  fig, axes = plt.subplots(len(regimes), 1, figsize=(max(6, 1.3 * len(results)), 3.2 * len(regimes)),
                           squeeze=False)
  width = 0.8 / len(methods)
  for ax, regime in zip(axes[:, 0], regimes):
    names = [n for n in results if regime in results[n]]
    for i, method in enumerate(methods):
      pos = np.arange(len(names)) + (i - (len(methods) - 1) / 2) * width
      test_acc = [results[n][regime][method]["test_acc"] for n in names]
      train_acc = [results[n][regime][method]["train_acc"] for n in names]
      bars = ax.bar(pos, test_acc, width, label=method)
      ax.bar(pos, np.maximum(np.subtract(train_acc, test_acc), 0), width, bottom=test_acc, fill=False, hatch="//",
             edgecolor=bars.patches[0].get_facecolor(), linewidth=0)
    ax.set_xticks(np.arange(len(names)), [n.replace("fewclue/", "") for n in names], rotation=20)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"training rows: {regime} (hatched: train - test gap)")
    ax.grid(axis="y", alpha=0.3)
  axes[0, 0].legend(ncol=len(methods), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.12))
  fig.tight_layout()
  return fig
