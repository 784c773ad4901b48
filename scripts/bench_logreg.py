"""Speed of note 1's analytic fit vs scikit-learn's lbfgs LogisticRegression.

Both fit softmax regression on the same standardised Fashion-MNIST training
set (60,000 x 784, 10 classes) in one process; we report the best of a few
repeats of each, the analytic fit's jit compile separately, the ratio, and
both models' test accuracy (a fast fit that is worse would not be a win).

Also in the same run (speed is not their target, this is for the record): the
in-memory fit with shrinkage="auto" (Ledoit-Wolf per class), and the streaming
fit (`logreg.fit_analytic_streaming`: one pass over batches of --batch_size
rows, float64 moments on the host) with the fixed floor and with "auto", each
with its largest logit difference from the in-memory fit on the test set.

  python scripts/bench_logreg.py [--repeats 3] [--max_iter 100] [--data_dir DIR] [--no_sklearn]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings

import jax
import numpy as np

from lmsys import data, timing
from lmsys.notes import logreg


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--max_iter", type=int, default=100, help="lbfgs iterations (sklearn's default: 100)")
  parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX directory")
  parser.add_argument("--batch_size", type=int, default=4096, help="rows per batch of the streaming fit")
  parser.add_argument("--no_sklearn", action="store_true", help="skip lbfgs (~2 min a fit on 2 cores)")
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
  in_memory_logits = np.asarray(logreg.logits(test_x, w, b))
  analytic_acc = logreg.evaluate(in_memory_logits, test_y)["accuracy"]

  # shrinkage="auto" in memory, then both streaming fits, all on the same rows.
  fit_auto = lambda: logreg.fit_analytic(x_dev, y_dev, 10, shrinkage="auto")
  auto = timing.benchmark(fit_auto, jit=False, repeats=max(args.repeats, 5))
  auto_logits = np.asarray(logreg.logits(test_x, *fit_auto()))
  batches = lambda: ((x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, len(y), args.batch_size))
  streaming = {}
  for label, shrinkage, reference in (("streaming", 1e-3, in_memory_logits), ("streaming_auto", "auto", auto_logits)):
    fit_stream = lambda shrinkage=shrinkage: logreg.fit_analytic_streaming(batches(), 10, shrinkage=shrinkage)
    measured = timing.benchmark(fit_stream, jit=False, repeats=args.repeats)
    stream_logits = np.asarray(logreg.logits(test_x, *fit_stream()))
    streaming[label] = {
        "fit_s": measured.best_seconds, "all_s": [measured.first_seconds, *measured.times],
        "test_acc": logreg.evaluate(stream_logits, test_y)["accuracy"],
        "max_logit_diff": float(np.abs(stream_logits - reference).max()),
        "max_logit": float(np.abs(reference).max()),
        "same_predictions": float(np.mean(stream_logits.argmax(1) == reference.argmax(1)))}
  auto_acc = logreg.evaluate(auto_logits, test_y)["accuracy"]

  result = {
      "machine": f"{platform.machine()} {os.cpu_count()} cpus, jax backend {jax.default_backend()}",
      "train_shape": list(x.shape),
      "analytic_fit_s": analytic_s, "analytic_all_s": analytic_all,
      "analytic_compile_s": first_call - analytic_s,
      "analytic_test_acc": analytic_acc,
      "analytic_auto_fit_s": auto.best_seconds, "analytic_auto_all_s": list(auto.times),
      "analytic_auto_compile_s": auto.first_seconds - auto.best_seconds, "analytic_auto_test_acc": auto_acc,
      "streaming_batch_size": args.batch_size,
      **{f"{label}_{key}": value for label, row in streaming.items() for key, value in row.items()},
  }
  print(f"Fashion-MNIST train {x.shape[0]} x {x.shape[1]}, {result['machine']}")
  print(f"analytic fit      {analytic_s:8.3f} s  (best of {len(analytic_all)}; first call incl. jit compile "
        f"{first_call:.3f} s)  test acc {analytic_acc:.4f}")
  print(f"  auto shrinkage  {auto.best_seconds:8.3f} s  (best of {len(auto.times)}; first call incl. jit compile "
        f"{auto.first_seconds:.3f} s)  test acc {auto_acc:.4f}")
  for label, row in streaming.items():
    base = analytic_s if label == "streaming" else auto.best_seconds
    print(f"{label + ' fit':<18}{row['fit_s']:8.3f} s  (best of {len(row['all_s'])}, batches of {args.batch_size}; "
          f"{row['fit_s'] / base:.1f}x the in-memory fit)  test acc {row['test_acc']:.4f}; logits within "
          f"{row['max_logit_diff']:.2e} of in-memory (max |logit| {row['max_logit']:.1f}), "
          f"{100 * row['same_predictions']:.2f}% same predictions")

  if not args.no_sklearn:
    from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

    def fit_sklearn():
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(solver="lbfgs", max_iter=args.max_iter).fit(x, y)

    sklearn = timing.benchmark(fit_sklearn, jit=False, repeats=args.repeats)
    sklearn_all = [sklearn.first_seconds, *sklearn.times]
    sklearn_s = min(sklearn_all)  # lbfgs has no compile: its first call counts as a repeat
    model = fit_sklearn()
    sklearn_acc = float(model.score(test_x, test_y))
    result.update({
        "sklearn_lbfgs_fit_s": sklearn_s, "sklearn_all_s": sklearn_all,
        "sklearn_max_iter": args.max_iter, "sklearn_iterations": int(model.n_iter_[0]),
        "speedup": sklearn_s / analytic_s,
        "speedup_incl_compile": sklearn_s / first_call,
        "sklearn_test_acc": sklearn_acc,
    })
    print(f"sklearn lbfgs     {sklearn_s:8.3f} s  (best of {len(sklearn_all)}; {result['sklearn_iterations']} "
          f"iterations, max_iter={args.max_iter})  test acc {sklearn_acc:.4f}")
    print(f"speedup           {result['speedup']:8.1f}x  (with the compile in: {result['speedup_incl_compile']:.1f}x)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
