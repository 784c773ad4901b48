"""Note 1: analytic logistic regression vs MLE vs scikit-learn (configs/logreg.py).

For every data set and regime (all training rows, and `data.small_n` of them) every method of
`lmsys.notes.logreg.METHODS` is fitted on the same standardised features and scored alike
(`logreg.compare`). The claims compare the analytic rule with the strongest converged
baseline (`mle_long` or scikit-learn's lbfgs fit, whichever converged and scores higher);
the note's own protocol (10-epoch MLE) is its own labelled claim row, whose verdict is
`not measured` where that run did not converge or scores at or below chance.
"""

from __future__ import annotations

from lmsys import checks, data, metrics
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.notes import logreg
from lmsys.tasks import classification

CHECKS = [(checks.trained,), (checks.positive_int, "data.small_n"), (checks.positive_int, "mle.epochs"),
          (checks.positive_int, "mle.long_min_steps"), (checks.positive_number, "mle.converged_rel_grad"),
          (checks.each_one_of, "methods", logreg.METHODS, "method"),
          (checks.positive_number, "analytic.shrinkage"), (checks.fraction, "claims.close_margin")]
SYNTHETIC = [(checks.positive_int, f"data.synthetic.{k}") for k in ("dim", "num_classes", "num_train", "num_test")]


def validate(config) -> None:
  if not config.data.names:
    raise ConfigError("config key 'data.names': empty; name at least one dataset (e.g. digits, synthetic)")
  checks.apply(config, CHECKS + (SYNTHETIC if "synthetic" in config.data.names else []))
  checks.datasets(config, "data.names", lambda name: name == "synthetic" or data.check_available(
      name, logreg.data_dir_for(config, name), **classification.data_options(config, name)))


def inputs(config) -> list[str]:
  return [path for name in config.data.names if name != "synthetic" for path in data.sources.input_files(
      name, logreg.data_dir_for(config, name), **classification.data_options(config, name))]


def run(config, workdir, writer) -> dict:
  results = {}
  for name in config.data.names:
    train, test, num_classes, problem = logreg.load_problem(config, name)
    regimes = {"full": train}
    if len(train["y"]) > config.data.small_n:
      regimes[f"n{config.data.small_n}"] = data.subsample(train, config.data.small_n, config.seed)
    results[name] = {regime: logreg.compare(config, rows, test, num_classes, problem, workdir=workdir,
                                            writer=writer, tag=f"{name}/{regime}")
                     for regime, rows in regimes.items()}
  metrics.save_figure(logreg.accuracy_figure(results, config.methods), workdir, "accuracy")
  return results


def _compare(id, text, rows, config, *, kind, names=("mle_long", "sklearn_logreg"), gap=False, margin=0.0):
  """One record per (data set, regime) in `rows` of analytic against the strongest converged baseline
  of `names`, and their summary."""
  records = []
  for label, row in rows:
    chance = row["chance"]["test_acc"]
    base = C.strongest_baseline([C.baseline(n, row[n]["test_acc"], row[n].get("converged", False), chance=chance)
                                 for n in names if n in row])
    if base is None or "analytic" not in row:
      continue
    a, b = row["analytic"], row[base["name"]]
    lo, hi = row["intervals"][f"analytic-{base['name']}"]
    value, interval = a["test_acc"] - b["test_acc"], [lo, hi]
    if gap:  # gap difference = train difference - test difference (train rows are fixed)
      train_diff = a["train_acc"] - b["train_acc"]
      value, interval = train_diff - value, [train_diff - hi, train_diff - lo]
    detail = (f"analytic {a['test_acc']:.4f} vs {base['name']} {b['test_acc']:.4f} test accuracy"
              + (f"; train-test gap {a['gap']:.4f} vs {b['gap']:.4f}" if gap else ""))
    records.append(C.claim(id, "1", text, dataset=label, baseline=base, kind=kind, margin=margin, value=value,
                           interval=interval, detail=detail,
                           metric="train-test gap difference" if gap else "test accuracy difference"))
  return records + ([C.summarize(records)] if len(records) > 1 else [])


def claims(results, config) -> list[dict]:
  regimes = lambda pick: [(f"{n}/{r}" if r != "full" else n, row) for n, per in results.items()
                          for r, row in per.items() if pick(r)]
  full, small = regimes(lambda r: r == "full"), regimes(lambda r: r != "full")
  margin = config.claims.close_margin
  close, better = "With full data the analytic solution is about as accurate as MLE", \
      "With 1,000 training samples the analytic solution is clearly more accurate than MLE"
  out = (_compare("close_full", close, full, config, kind="close", margin=margin)
         + _compare("better_small", better, small, config, kind="higher")
         + _compare("smaller_gap", "The analytic solution has a smaller train-test gap than MLE", full + small,
                    config, kind="lower", gap=True)
         + _compare("close_full_note_protocol", close + " (the note's 10-epoch MLE)", full, config, kind="close",
                    names=("mle",), margin=margin)
         + _compare("better_small_note_protocol", better + " (the note's 10-epoch MLE)", small, config,
                    kind="higher", names=("mle",)))
  pairs = [row for _, row in full + small if "analytic_auto" in row and "sklearn_lda_auto" in row]
  if pairs:
    gap = max(abs(r["analytic_auto"]["test_acc"] - r["sklearn_lda_auto"]["test_acc"]) for r in pairs)
    out.append(C.claim("auto_is_sklearn_lda", "lmsys", "shrinkage='auto' is scikit-learn's LDA(lsqr, shrinkage='auto')",
                       metric="largest |test accuracy difference|", value=gap, kind="at_most", target=0.001,
                       detail=f"over {len(pairs)} (set, regime) pairs"))
  for name, row in full:
    if "bayes" in row and "analytic" in row:
      lo, hi = row["intervals"]["analytic-bayes"]
      out.append(C.claim("bayes", "1", "Where classes are Gaussian with one shared covariance the analytic "
                         "rule is Bayes-optimal", dataset=name, metric="test accuracy difference to Bayes",
                         value=row["analytic"]["test_acc"] - row["bayes"]["test_acc"], interval=[lo, hi],
                         kind="close", margin=margin, detail=f"analytic {row['analytic']['test_acc']:.4f} vs "
                         f"the Bayes rule of the true parameters {row['bayes']['test_acc']:.4f}"))
  return out
