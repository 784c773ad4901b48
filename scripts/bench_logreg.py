"""Speed of note 1's analytic fit vs scikit-learn's lbfgs LogisticRegression.

Both fit softmax regression on the same standardised Fashion-MNIST training
set (60,000 x 784, 10 classes) in one process; we report the best of a few
repeats of each, the analytic fit's jit compile separately, the ratio, and
both models' test accuracy (a fast fit that is worse would not be a win).

  python scripts/bench_logreg.py [--repeats 3] [--max_iter 100] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings

import jax
import numpy as np

from lmsys import data, logreg, timing


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--max_iter", type=int, default=100, help="lbfgs iterations (sklearn's default: 100)")
  parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX directory")
  parser.add_argument("--json", default=None, help="also write the numbers here")
  args = parser.parse_args()

  ds = data.load_arrays("fashion_mnist", data_dir=args.data_dir)
  x, test_x = (a.astype(np.float32) for a in data.standardize(ds["train"]["x"], ds["test"]["x"]))
  y, test_y = ds["train"]["y"], ds["test"]["y"]
  x_dev = jax.device_put(x)
  y_dev = jax.device_put(y)

  fit = lambda: logreg.fit_analytic(x_dev, y_dev, 10)
  analytic = timing.benchmark(fit, jit=False, repeats=max(args.repeats, 5))
  first_call, analytic_s, analytic_all = analytic.first_seconds, analytic.best_seconds, list(analytic.times)
  w, b = fit()
  analytic_acc = logreg.evaluate(logreg.logits(test_x, w, b), test_y)["accuracy"]

  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

  def fit_sklearn():
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", ConvergenceWarning)
      return LogisticRegression(solver="lbfgs", max_iter=args.max_iter).fit(x, y)

  sklearn = timing.benchmark(fit_sklearn, jit=False, repeats=args.repeats)
  sklearn_s, sklearn_all = sklearn.best_seconds, [sklearn.first_seconds, *sklearn.times]
  sklearn_s = min(sklearn_all)  # lbfgs has no compile: its first call counts as a repeat
  model = fit_sklearn()
  sklearn_acc = float(model.score(test_x, test_y))

  result = {
      "machine": f"{platform.machine()} {os.cpu_count()} cpus, jax backend {jax.default_backend()}",
      "train_shape": list(x.shape),
      "analytic_fit_s": analytic_s, "analytic_all_s": analytic_all,
      "analytic_compile_s": first_call - analytic_s,
      "sklearn_lbfgs_fit_s": sklearn_s, "sklearn_all_s": sklearn_all,
      "sklearn_max_iter": args.max_iter, "sklearn_iterations": int(model.n_iter_[0]),
      "speedup": sklearn_s / analytic_s,
      "speedup_incl_compile": sklearn_s / first_call,
      "analytic_test_acc": analytic_acc, "sklearn_test_acc": sklearn_acc,
  }
  print(f"Fashion-MNIST train {x.shape[0]} x {x.shape[1]}, {result['machine']}")
  print(f"analytic fit      {analytic_s:8.3f} s  (best of {len(analytic_all)}; first call incl. jit compile "
        f"{first_call:.3f} s)  test acc {analytic_acc:.4f}")
  print(f"sklearn lbfgs     {sklearn_s:8.3f} s  (best of {len(sklearn_all)}; {result['sklearn_iterations']} "
        f"iterations, max_iter={args.max_iter})  test acc {sklearn_acc:.4f}")
  print(f"speedup           {result['speedup']:8.1f}x  (with the compile in: {result['speedup_incl_compile']:.1f}x)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
