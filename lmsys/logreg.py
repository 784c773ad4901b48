"""Note 1 (kexue 8578): logistic regression has an analytic solution.

If every class is Gaussian with its own mean mu_i and one shared covariance
Sigma, Bayes' rule makes the log-odds linear (this is LDA's rule):
  softmax:  w_i = mu_i Sigma^-1,  b_i = ln p_i - 1/2 mu_i Sigma^-1 mu_i^T
  binary:   w = (mu_1 - mu_0) Sigma^-1,
            b = 1/2 (mu_0 Sigma^-1 mu_0^T - mu_1 Sigma^-1 mu_1^T) + ln(p_1/p_0)
After whitening the features on train (mean 0, covariance I), the shared
covariance is  Sigma = I - sum_i p_i mu_i^T mu_i.

Numerics. The whitening divides by sqrt(lambda + eps) for each eigenvalue
lambda of the train correlation matrix (features scaled to unit variance
first), eps = `shrinkage` * mean(lambda), so the floor is free of units.
Then the whitened covariance C is diag(lambda / (lambda + eps)), not exactly
I, and the post's `I - sum p_i mu_i^T mu_i` equals the within-class covariance
plus diag(eps / (lambda + eps)): a ridge that is ~1 in the (near) null
directions of the data and ~0 where the data has variance. So Sigma is
positive definite for any eps > 0 even when there are fewer samples than
features, and eps -> 0 gives exact LDA when the covariance has full rank.
Centering before the covariance and HIGHEST matmul precision avoid float32
cancellation. A class absent from train gets the prior of half a sample.

The returned (weights [D, K], bias [K]) act on raw features,
`logits = x @ weights + bias`: the whitening is folded in. Binary tasks use
the same 2-class softmax form; `binary_form` turns it into the single (w, b)
of the binary formula (the logit difference), which `fit_analytic_binary`
computes directly.

Run: python -m experiments.run --config configs/logreg.py --workdir /tmp/logreg
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


def _whiten(x, shrinkage):
  """Train mean, and W with (x - mean) @ W ~ whitened: per-feature scaling, then PCA whitening, floored.

  Scaling each feature to unit variance first makes the eigenvalue floor
  relative to the correlation matrix, so it does not depend on the units of
  each feature; a constant feature gets weight 0.
  """
  mean = x.mean(0)
  xc = x - mean
  std = jnp.sqrt(jnp.mean(xc * xc, axis=0))
  inv_std = jnp.where(std > 0, 1.0 / jnp.where(std > 0, std, 1.0), 0.0)
  xs = xc * inv_std
  corr = jnp.matmul(xs.T, xs, precision=HIGHEST) / x.shape[0]
  lam, vecs = jnp.linalg.eigh(corr)
  lam = jnp.maximum(lam, 0.0)
  eps = shrinkage * jnp.maximum(lam.mean(), jnp.finfo(x.dtype).tiny)
  return mean, xc, inv_std[:, None] * vecs * jax.lax.rsqrt(lam + eps)


def _class_stats(xc, y, num_classes, whiten):
  """Class priors and class means in whitened coordinates."""
  onehot = jax.nn.one_hot(y, num_classes, dtype=xc.dtype)
  counts = onehot.sum(0)
  priors = jnp.maximum(counts, 0.5) / xc.shape[0]
  means = jnp.matmul(onehot.T, xc, precision=HIGHEST) / jnp.maximum(counts, 1.0)[:, None]
  return priors, jnp.matmul(means, whiten, precision=HIGHEST)


def _shared_covariance(mu, priors):
  return jnp.eye(mu.shape[1], dtype=mu.dtype) - jnp.matmul(mu.T, priors[:, None] * mu, precision=HIGHEST)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _fit_softmax(x, y, num_classes, shrinkage):
  mean, xc, whiten = _whiten(x, shrinkage)
  priors, mu = _class_stats(xc, y, num_classes, whiten)
  sigma = _shared_covariance(mu, priors)
  w_z = jax.scipy.linalg.solve(sigma, mu.T, assume_a="pos")             # Sigma^-1 mu_i^T, [D, K]
  b_z = jnp.log(priors) - 0.5 * jnp.sum(mu.T * w_z, axis=0)
  weights = jnp.matmul(whiten, w_z, precision=HIGHEST)                    # fold the whitening in
  return weights, b_z - jnp.matmul(mean, weights, precision=HIGHEST)


@jax.jit
def _fit_binary(x, y, shrinkage):
  mean, xc, whiten = _whiten(x, shrinkage)
  priors, mu = _class_stats(xc, y, 2, whiten)
  sigma = _shared_covariance(mu, priors)
  inv_mu = jax.scipy.linalg.solve(sigma, mu.T, assume_a="pos")           # [D, 2]
  w_z = inv_mu[:, 1] - inv_mu[:, 0]
  b_z = 0.5 * (mu[0] @ inv_mu[:, 0] - mu[1] @ inv_mu[:, 1]) + jnp.log(priors[1] / priors[0])
  w = jnp.matmul(whiten, w_z, precision=HIGHEST)
  return w, b_z - mean @ w


def _as_arrays(x, y, num_classes):
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.int32)
  if num_classes is None:
    num_classes = int(np.max(np.asarray(y))) + 1
  return x, y, num_classes


def fit_analytic(x, y, num_classes=None, shrinkage: float = 1e-3):
  """Analytic softmax regression: (weights [D, K], bias [K]) with logits = x @ weights + bias."""
  x, y, num_classes = _as_arrays(x, y, num_classes)
  return _fit_softmax(x, y, num_classes, jnp.float32(shrinkage))


def fit_analytic_binary(x, y, shrinkage: float = 1e-3):
  """The binary formula directly: (w [D], b) with log-odds of class 1 = x @ w + b."""
  x, y, _ = _as_arrays(x, y, 2)
  return _fit_binary(x, y, jnp.float32(shrinkage))


def binary_form(weights, bias):
  """Softmax (w [D, 2], b [2]) -> the binary (w [D], b) of the same rule (the logit difference)."""
  return weights[:, 1] - weights[:, 0], bias[1] - bias[0]


def logits(x, weights, bias):
  return jnp.matmul(jnp.asarray(x, jnp.float32), weights, precision=HIGHEST) + bias


def evaluate(logits_, y) -> dict[str, float]:
  """Accuracy and mean log-loss (nats) of class logits."""
  logits_ = np.asarray(logits_, np.float64)
  y = np.asarray(y)
  log_probs = logits_ - np.logaddexp.reduce(logits_, axis=1, keepdims=True)
  return {"accuracy": float(np.mean(logits_.argmax(1) == y)),
          "log_loss": float(-np.mean(log_probs[np.arange(len(y)), y]))}


# ---------------------------------------------------------------- synthetic data

def gaussian_problem(dim: int, num_classes: int, separation: float = 1.5, seed: int = 0) -> dict:
  """Class means, one shared covariance and unequal priors: the note's generative model."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(dim, dim)) / np.sqrt(dim)
  cov = a @ a.T + 0.1 * np.eye(dim)                      # correlated, well conditioned
  chol = np.linalg.cholesky(cov)
  means = separation * rng.normal(size=(num_classes, dim)) @ chol.T / np.sqrt(dim) * 2
  priors = rng.dirichlet(np.full(num_classes, 5.0))
  return {"means": means, "cov": cov, "priors": priors}


def sample_gaussian(problem: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  y = rng.choice(len(problem["priors"]), size=n, p=problem["priors"])
  noise = rng.normal(size=(n, problem["cov"].shape[0])) @ np.linalg.cholesky(problem["cov"]).T
  return (problem["means"][y] + noise).astype(np.float32), y.astype(np.int32)


def bayes_logits(x, problem: dict) -> np.ndarray:
  """The Bayes-optimal class log-posteriors (up to a constant) from the true parameters."""
  inv = np.linalg.inv(problem["cov"])
  w = inv @ problem["means"].T
  b = np.log(problem["priors"]) - 0.5 * np.sum(problem["means"].T * w, axis=0)
  return np.asarray(x, np.float64) @ w + b
