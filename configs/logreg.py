"""Note 1 (kexue 8578): analytic logistic regression vs MLE, scikit-learn's lbfgs and LDA.

The analytic (Gaussian, shared covariance) solution of logistic regression vs MLE softmax
regression trained by the shared trainer,
with scikit-learn's LogisticRegression (lbfgs) and LDA as outside references,
on full training data and on 1,000 training samples.

  python -m experiments.run --config configs/logreg.py          # bundled sets + synthetic, 3-10 min on 2 shared cores
  python -m experiments.run --config configs/logreg.py:full     # + Fashion-MNIST and FewCLUE text features
  python -m experiments.run --config configs/logreg.py:smoke    # seconds, for tests
  python -m experiments.sweep --config configs/logreg.py --workdir runs/sweep_logreg   # shrinkage scan

`:full` reads Fashion-MNIST from data.fashion_mnist_dir (default: $LMSYS_DATA_DIR
if it holds it, else /usr/share/datasets/fashion-mnist) and FewCLUE from
data.data_dir or $LMSYS_DATA_DIR; FewCLUE train = data.train_split
(train_few_all), test = data.test_split (dev_few_all).
"""

import ml_collections

from lmsys import config as config_lib
from lmsys.launch import sweep

BUNDLED = ("digits", "breast_cancer", "wine", "iris")
FEWCLUE = ("fewclue/eprstmt", "fewclue/tnews", "fewclue/iflytek", "fewclue/csldcp")


VARIANTS = dict(smoke=False, full=False)


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, **VARIANTS)
  c = config_lib.experiment_config("logreg")

  c.data = ml_collections.ConfigDict()
  c.data.names = BUNDLED + ("synthetic",)
  c.data.data_dir = ""            # FewCLUE root; "" = $LMSYS_DATA_DIR
  c.data.fashion_mnist_dir = ""   # "" = $LMSYS_DATA_DIR if it holds it, else /usr/share/datasets/fashion-mnist
  c.data.train_split = "train_few_all"  # FewCLUE split files <split>.json: a user with the
  c.data.test_split = "dev_few_all"     # public test set passes --config.data.test_split=test_public
  c.data.small_n = 1000           # the small-data regime; skipped where train has no more rows
  c.data.text = ml_collections.ConfigDict(dict(svd_dim=256, ngram_max=2, use_unlabeled=True))
  # Shared-covariance Gaussians, where the analytic rule is Bayes-optimal.
  c.data.synthetic = ml_collections.ConfigDict(dict(
      dim=50, num_classes=5, separation=1.0, num_train=10000, num_test=20000))

  # analytic: the fixed eigenvalue floor analytic.shrinkage; analytic_auto: Ledoit-Wolf per class,
  # the rule of sklearn_lda_auto = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").
  c.methods = ("analytic", "analytic_auto", "mle", "mle_long", "sklearn_logreg", "sklearn_lda", "sklearn_lda_auto")
  c.analytic = ml_collections.ConfigDict(dict(shrinkage=1e-3))
  c.sklearn = ml_collections.ConfigDict(dict(C=1.0, max_iter=1000))
  # MLE baseline of the note: one dense layer, Adam 1e-3, batch 32, 10 epochs, no regularisation.
  # mle_long: the same, but at least long_min_steps steps (10 epochs of a small set is a few
  # hundred steps, far from the maximum-likelihood solution the note compares against).
  # A fit counts as converged when its full-batch gradient is at most converged_rel_grad of
  # the gradient at zero weights (lmsys.notes.logreg.relative_gradient).
  c.mle = ml_collections.ConfigDict(dict(epochs=10, long_min_steps=3000, converged_rel_grad=1e-2))
  # "About as accurate": test accuracies within close_margin (lmsys.claims, kind "close").
  c.claims = ml_collections.ConfigDict(dict(close_margin=0.02))
  c.train = config_lib.train_defaults(
      num_steps=10**9,  # a cap: each model trains min(num_steps, ceil(epochs * N / batch)) steps
      batch_size=32, log_every=500, eval_every=10**9, checkpoint_every=10**9, progress_bar=False)
  c.optimizer = config_lib.optimizer_defaults(name="adam", learning_rate=1e-3)

  if variants.full:
    c.data.names = BUNDLED + ("synthetic", "fashion_mnist") + FEWCLUE
  if variants.smoke:
    c.data.names = ("iris", "synthetic")
    c.data.small_n = 200  # iris (112 train rows) runs only 'full'
    c.data.synthetic.update(dim=5, num_classes=3, num_train=300, num_test=500)
    c.mle.epochs, c.mle.long_min_steps = 2, 10
    c.sklearn.max_iter = 100
  return c


def get_sweep(arg=None):
  """The fixed eigenvalue floor of `analytic` (analytic.shrinkage) over four decades."""
  if config_lib.parse_arg(arg, **VARIANTS).smoke:
    return sweep.product({"analytic.shrinkage": [1e-3, 1e-1]})
  return sweep.product({"analytic.shrinkage": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]})
