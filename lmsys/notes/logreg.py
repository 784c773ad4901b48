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
cancellation. A class absent from train has no mean to put anywhere: it gets
weights 0 and bias -inf (probability 0; scikit-learn does not know it at all).
(An earlier rule gave it the prior of half a sample at the train mean, which
made it a catch-all: on iflytek with 1,000 training rows and shrinkage="auto",
347 of the 1,373 test rows went to the one absent class.) A feature whose train std is 0, or at
most 1e-6 of its |mean| (below what float32 resolves), is constant: it gets
weight 0.

shrinkage="auto" (Ledoit-Wolf, as scikit-learn's LDA does it). The fixed floor
is one number for every data set, and it fails where N is close to D
(Fashion-MNIST with 1,000 rows, FewCLUE). "auto" instead shrinks the
covariance by an amount computed from the training data alone, in closed form,
and reproduces exactly what `LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto")` does (scikit-learn 1.9, `discriminant_analysis._class_cov`
and `_cov`), so the note-1 table compares like with like:
  for each class k separately: standardise its rows by the class's own mean and
  std (StandardScaler; a feature constant within the class keeps scale 1), take
  the Ledoit-Wolf estimate of that correlation matrix R_k,
      (1 - a_k) R_k + a_k mu_k I,   mu_k = trace(R_k) / D,
      a_k = min(beta, delta) / delta,  delta = |R_k - mu_k I|_F^2 / D,
      beta = (1/n_k sum_n |z_n|^4 - |R_k|_F^2) / (D n_k)   (z_n: standardised rows)
  (`sklearn.covariance.ledoit_wolf`), scale it back by the class std, and
  Sigma = sum_k p_k C_k with p_k = n_k / N; then the softmax formula above.
So the shrinkage target of each class is its own diagonal (the variances are
kept, the correlations pulled toward 0), with one intensity a_k per class; it is
not Ledoit-Wolf on the pooled within-class scatter. `auto_shrinkage` returns the
a_k. The fit is computed in units of each feature's train std (this makes no
difference to the rule); the only place units show is a feature constant within
a class, whose shrinkage target is scale 1: scikit-learn means 1 in the units of
its input, here it is 1 train std, which is the same thing on standardised
input (as in the experiment) and unit-free otherwise. "Constant within a class"
is a class variance of at most 1e-12 train variances (exactly 0 for repeated
values: rows are taken relative to one row of their class).

Streaming. `fit_analytic_streaming(batches, num_classes, shrinkage)` fits in
one pass over an iterable of (x, y) batches, so the training set need not fit
in memory: `moments_update` accumulates, in float64 on the host, the class
counts, per-class sums and the second-moment matrix (pooled, D x D; with
shrinkage="auto" per class, plus the per-class third and fourth moments
sum (u*u) u^T and sum (u*u)(u*u)^T that Ledoit-Wolf's beta needs: 3 K D^2
numbers), each row u = x - shift of its class, the shift being the first row of
that class seen (the shifted-data algorithm: sums stay small relative to the
spread, and a feature constant within a class sums to exactly 0).
`fit_from_moments` turns them into the same correlation matrix, class means and
(for "auto") class covariances and sums of |z|^4 that the in-memory fit computes
from the whole array, and calls the same solver; the result equals
`fit_analytic` on the concatenated batches to float32 tolerance (tested). The
functions are pure: `moments_update` returns new moments and leaves its input
as it was.

The returned (weights [D, K], bias [K]) act on raw features,
`logits = x @ weights + bias`: the whitening is folded in. Binary tasks use
the same 2-class softmax form; `binary_form` turns it into the single (w, b)
of the binary formula (the logit difference), which `fit_analytic_binary`
computes directly.

Run: python -m experiments.run --config configs/logreg.py --workdir /tmp/logreg
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
CONSTANT_REL_STD = 1e-6     # std <= this * |mean|: a constant feature (weight 0)
CLASS_CONSTANT_VAR = 1e-12  # class variance <= this (in train variances): constant within the class


def _inv_std(var, mean, xp=jnp):
  """1 / std per feature, 0 for a constant feature."""
  std = xp.sqrt(xp.maximum(var, 0.0))
  keep = std > CONSTANT_REL_STD * xp.abs(mean)
  return xp.where(keep, 1.0 / xp.where(keep, std, 1.0), 0.0)


def _centre(x):
  """Train mean, centred rows, 1 / std. The mean is taken relative to the first row, so a
  constant feature gets exactly its value as mean and exactly 0 as centred value."""
  shift = x[0]
  mean = shift + jnp.mean(x - shift, axis=0)
  xc = x - mean
  return mean, xc, _inv_std(jnp.mean(xc * xc, axis=0), mean)


def _whitening(corr, inv_std, shrinkage):
  """W with (x - mean) @ W ~ whitened: per-feature scaling, then PCA whitening, floored.

  Scaling each feature to unit variance first makes the eigenvalue floor
  relative to the correlation matrix, so it does not depend on the units of
  each feature; a constant feature gets weight 0.
  """
  lam, vecs = jnp.linalg.eigh(corr)
  lam = jnp.maximum(lam, 0.0)
  eps = shrinkage * jnp.maximum(lam.mean(), jnp.finfo(corr.dtype).tiny)
  return inv_std[:, None] * vecs * jax.lax.rsqrt(lam + eps)


def _correlation(xc, inv_std):
  xs = xc * inv_std
  return jnp.matmul(xs.T, xs, precision=HIGHEST) / xc.shape[0]


def _whiten(x, shrinkage):
  mean, xc, inv_std = _centre(x)
  return mean, xc, _whitening(_correlation(xc, inv_std), inv_std, shrinkage)


def _class_stats(xc, y, num_classes, whiten):
  """Class priors and class means in whitened coordinates."""
  onehot = jax.nn.one_hot(y, num_classes, dtype=xc.dtype)
  counts = onehot.sum(0)
  priors = jnp.maximum(counts, 0.5) / xc.shape[0]
  means = jnp.matmul(onehot.T, xc, precision=HIGHEST) / jnp.maximum(counts, 1.0)[:, None]
  return priors, jnp.matmul(means, whiten, precision=HIGHEST)


def _shared_covariance(mu, priors):
  return jnp.eye(mu.shape[1], dtype=mu.dtype) - jnp.matmul(mu.T, priors[:, None] * mu, precision=HIGHEST)


def _floor_solution(mean, inv_std, corr, counts, means_c, shrinkage):
  """The softmax rule from moments: train mean, 1/std, correlation matrix, class counts, class means - mean."""
  whiten = _whitening(corr, inv_std, shrinkage)
  priors = jnp.maximum(counts, 0.5) / counts.sum()
  mu = jnp.matmul(means_c, whiten, precision=HIGHEST)                     # class means, whitened
  sigma = _shared_covariance(mu, priors)
  w_z = jax.scipy.linalg.solve(sigma, mu.T, assume_a="pos")             # Sigma^-1 mu_i^T, [D, K]
  b_z = jnp.log(priors) - 0.5 * jnp.sum(mu.T * w_z, axis=0)
  weights = jnp.matmul(whiten, w_z, precision=HIGHEST)                    # fold the whitening in
  return weights, _absent_to_minus_inf(b_z - jnp.matmul(mean, weights, precision=HIGHEST), counts)


def _absent_to_minus_inf(bias, counts):
  """A class absent from train: probability 0 (its weights are 0 already: its mean is the train mean)."""
  return jnp.where(counts > 0, bias, -jnp.inf)


_solve_floor = jax.jit(_floor_solution)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _fit_softmax(x, y, num_classes, shrinkage):
  mean, xc, inv_std = _centre(x)
  onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
  counts = onehot.sum(0)
  means_c = jnp.matmul(onehot.T, xc, precision=HIGHEST) / jnp.maximum(counts, 1.0)[:, None]
  return _floor_solution(mean, inv_std, _correlation(xc, inv_std), counts, means_c, shrinkage)


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


# ---------------------------------------------------------------- shrinkage="auto" (Ledoit-Wolf per class)

def _class_scale(var, xp=jnp):
  """StandardScaler's scale within a class: the std, or 1 where the feature is constant in the class."""
  constant = var <= CLASS_CONSTANT_VAR
  return xp.where(constant, 1.0, xp.sqrt(xp.where(constant, 1.0, var))), ~constant


def _auto_solution(mean, inv_std, counts, means_s, cov_s, fourth):
  """The softmax rule with scikit-learn's Ledoit-Wolf class covariances, in units of the train std.

  means_s [K, D]: class means - train mean; cov_s [K, D, D]: class covariances (divided by n_k);
  fourth [K]: sum over the class's rows of |z|^4, z the row standardised by its class (constant
  features 0). Returns (weights, bias, intensities [K]).
  """
  dim = means_s.shape[1]
  eye = jnp.eye(dim, dtype=cov_s.dtype)
  scale, varying = _class_scale(jnp.diagonal(cov_s, axis1=1, axis2=2))
  cov = jnp.where(varying[:, :, None] & varying[:, None, :], cov_s, 0.0)
  corr = cov / (scale[:, :, None] * scale[:, None, :])                  # R_k
  n_k = jnp.maximum(counts, 1.0)
  mu = jnp.trace(corr, axis1=1, axis2=2) / dim
  delta = jnp.sum(jnp.square(corr - mu[:, None, None] * eye), axis=(1, 2)) / dim
  beta = (fourth / n_k - jnp.sum(jnp.square(corr), axis=(1, 2))) / (dim * n_k)
  beta = jnp.clip(beta, 0.0, delta)
  alpha = jnp.where(delta > 0, beta / jnp.where(delta > 0, delta, 1.0), 0.0)
  shrunk = ((1.0 - alpha)[:, None, None] * cov
            + (alpha * mu)[:, None, None] * jnp.square(scale)[:, :, None] * eye)
  sigma = jnp.einsum("k,kij->ij", counts / counts.sum(), shrunk, precision=HIGHEST)
  sigma = sigma + jnp.diag((inv_std == 0).astype(sigma.dtype))          # constant features: weight 0 anyway
  w_s = jax.scipy.linalg.solve(sigma, means_s.T, assume_a="pos")        # [D, K]
  priors = jnp.maximum(counts, 0.5) / counts.sum()
  bias = jnp.log(priors) - 0.5 * jnp.sum(means_s.T * w_s, axis=0)
  weights = inv_std[:, None] * w_s
  return weights, _absent_to_minus_inf(bias - jnp.matmul(mean, weights, precision=HIGHEST), counts), alpha


_solve_auto = jax.jit(_auto_solution)


@functools.partial(jax.jit, static_argnames=("num_classes", "rows_per_class"))
def _fit_auto(x, y, num_classes, rows_per_class):
  """In memory: the rows of each class gathered into [K, rows_per_class, D] (zero-padded)."""
  mean, xc, inv_std = _centre(x)
  z = xc * inv_std
  counts_i = jnp.bincount(y, length=num_classes)
  order = jnp.argsort(y, stable=True)
  slot = jnp.arange(rows_per_class)
  valid = slot[None, :] < counts_i[:, None]
  rows = order[jnp.where(valid, (jnp.cumsum(counts_i) - counts_i)[:, None] + slot[None, :], 0)]
  valid = valid[:, :, None]
  zk = jnp.where(valid, z[rows], 0.0)                                    # [K, R, D]
  shift = zk[:, 0]                                                       # one row of each class
  u = jnp.where(valid, zk - shift[:, None], 0.0)
  counts = counts_i.astype(x.dtype)
  ubar = u.sum(1) / jnp.maximum(counts, 1.0)[:, None]
  cen = jnp.where(valid, u - ubar[:, None], 0.0)
  cov_s = jnp.einsum("krd,kre->kde", cen, cen, precision=HIGHEST) / jnp.maximum(counts, 1.0)[:, None, None]
  scale, varying = _class_scale(jnp.diagonal(cov_s, axis1=1, axis2=2))
  zs = jnp.where(varying[:, None, :], cen / scale[:, None, :], 0.0)
  fourth = jnp.sum(jnp.square(jnp.sum(jnp.square(zs), axis=-1)), axis=-1)
  return _auto_solution(mean, inv_std, counts, shift + ubar, cov_s, fourth)


# ---------------------------------------------------------------- public API

def _is_auto(shrinkage) -> bool:
  if isinstance(shrinkage, str):
    if shrinkage != "auto":
      raise ValueError(f"shrinkage: expected a float > 0 or 'auto', got {shrinkage!r}")
    return True
  if not shrinkage > 0:
    raise ValueError(f"shrinkage: expected a float > 0 or 'auto', got {shrinkage!r}")
  return False


def _as_arrays(x, y, num_classes):
  x = jnp.asarray(x, jnp.float32)
  y_host = np.asarray(y)
  if x.ndim != 2 or y_host.shape != (x.shape[0],) or x.shape[0] == 0:
    raise ValueError(f"expected x [N, D] and y [N] with N > 0, got {x.shape} and {y_host.shape}")
  if num_classes is None:
    num_classes = int(np.max(y_host)) + 1
  if y_host.min() < 0 or y_host.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}), got [{y_host.min()}, {y_host.max()}]")
  return x, jnp.asarray(y_host, jnp.int32), num_classes


def _rows_per_class(y, num_classes) -> int:
  """Largest class, rounded up to a multiple of 64 (fewer recompilations across subsets)."""
  largest = int(np.bincount(np.asarray(y), minlength=num_classes).max())
  return -(-largest // 64) * 64


def fit_analytic(x, y, num_classes=None, shrinkage: float | str = 1e-3):
  """Analytic softmax regression: (weights [D, K], bias [K]) with logits = x @ weights + bias.

  shrinkage: a float > 0 is the eigenvalue floor of the whitening (module docstring);
  "auto" is scikit-learn's Ledoit-Wolf shrinkage per class (LinearDiscriminantAnalysis
  with solver="lsqr", shrinkage="auto"; module docstring).
  """
  auto = _is_auto(shrinkage)
  x, y, num_classes = _as_arrays(x, y, num_classes)
  if auto:
    weights, bias, _ = _fit_auto(x, y, num_classes, _rows_per_class(y, num_classes))
    return weights, bias
  return _fit_softmax(x, y, num_classes, jnp.float32(shrinkage))


def auto_shrinkage(x, y, num_classes=None) -> np.ndarray:
  """The Ledoit-Wolf intensities a_k in [0, 1] that shrinkage="auto" uses, one per class [K]
  (0 for a class absent from y); each equals `sklearn.covariance.ledoit_wolf` of that class's
  rows after StandardScaler."""
  x, y, num_classes = _as_arrays(x, y, num_classes)
  return np.asarray(_fit_auto(x, y, num_classes, _rows_per_class(y, num_classes))[2])


def fit_analytic_binary(x, y, shrinkage: float | str = 1e-3):
  """The binary formula directly: (w [D], b) with log-odds of class 1 = x @ w + b.

  shrinkage="auto" goes through the softmax form (`binary_form` of `fit_analytic`)."""
  if _is_auto(shrinkage):
    return binary_form(*fit_analytic(x, y, 2, shrinkage))
  x, y, _ = _as_arrays(x, y, 2)
  return _fit_binary(x, y, jnp.float32(shrinkage))


# ---------------------------------------------------------------- streaming (one pass over batches)

@dataclasses.dataclass(frozen=True)
class Moments:
  """What the analytic fit needs of the training set, accumulated in float64 over batches.

  Each row enters as u = x - shift[y], shift[k] being the first row of class k seen.
  sum2 is the pooled sum of u u^T [D, D], or per class [K, D, D] when `auto`; sum3 and
  sum4 (auto only) are per-class sums of (u*u) u^T and (u*u)(u*u)^T [K, D, D].
  """
  count: np.ndarray          # [K] rows per class
  shift: np.ndarray          # [K, D]
  seen: np.ndarray           # [K] bool: shift[k] is set
  sum1: np.ndarray           # [K, D] sum of u per class
  sum2: np.ndarray
  sum3: np.ndarray | None = None
  sum4: np.ndarray | None = None

  @property
  def auto(self) -> bool:
    return self.sum3 is not None

  @property
  def num_rows(self) -> int:
    return int(self.count.sum())


def moments_init(num_classes: int, dim: int, auto: bool = False) -> Moments:
  """Empty moments. auto=True also keeps the per-class moments shrinkage="auto" needs
  (3 K D^2 float64 numbers instead of D^2)."""
  zeros = lambda *shape: np.zeros(shape, np.float64)
  return Moments(count=zeros(num_classes), shift=zeros(num_classes, dim),
                 seen=np.zeros(num_classes, bool), sum1=zeros(num_classes, dim),
                 sum2=zeros(num_classes, dim, dim) if auto else zeros(dim, dim),
                 sum3=zeros(num_classes, dim, dim) if auto else None,
                 sum4=zeros(num_classes, dim, dim) if auto else None)


def moments_update(moments: Moments, x, y) -> Moments:
  """Moments of the rows seen so far plus this batch (x [B, D], y [B]); the input is not modified."""
  num_classes, dim = moments.shift.shape
  x = np.asarray(x, np.float64)
  y = np.asarray(y)
  if x.ndim != 2 or x.shape[1] != dim or y.shape != (x.shape[0],):
    raise ValueError(f"expected x [B, {dim}] and y [B], got {x.shape} and {y.shape}")
  if len(y) == 0:
    return moments
  y = y.astype(np.int64)
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
  shift, seen = moments.shift, moments.seen
  classes, first = np.unique(y, return_index=True)
  new = ~seen[classes]
  if new.any():
    shift, seen = shift.copy(), seen.copy()
    shift[classes[new]] = x[first[new]]
    seen[classes[new]] = True
  u = x - shift[y]
  onehot = (y[:, None] == np.arange(num_classes)).astype(np.float64)
  updates = dict(count=moments.count + onehot.sum(0), shift=shift, seen=seen, sum1=moments.sum1 + onehot.T @ u)
  if moments.auto:
    sum2, sum3, sum4 = moments.sum2.copy(), moments.sum3.copy(), moments.sum4.copy()
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], classes, side="left").tolist() + [len(y)]
    for k, lo, hi in zip(classes, bounds[:-1], bounds[1:]):
      uk = u[order[lo:hi]]
      ak = uk * uk
      sum2[k] += uk.T @ uk
      sum3[k] += ak.T @ uk
      sum4[k] += ak.T @ ak
    updates.update(sum2=sum2, sum3=sum3, sum4=sum4)
  else:
    updates.update(sum2=moments.sum2 + u.T @ u)
  return dataclasses.replace(moments, **updates)


def _moment_stats(m: Moments):
  """float64: train mean, 1/std, class counts, class means - mean, per-class within scatters."""
  count = m.count
  n = count.sum()
  if n == 0:
    raise ValueError("no rows were accumulated")
  present = (count > 0)[:, None]
  ubar = m.sum1 / np.maximum(count, 1.0)[:, None]
  class_mean = np.where(present, m.shift + ubar, 0.0)
  mean = count @ class_mean / n
  means_c = np.where(present, class_mean - mean, 0.0)
  if m.auto:
    within_k = m.sum2 - count[:, None, None] * ubar[:, :, None] * ubar[:, None, :]
    within = within_k.sum(0)
  else:
    within_k = None
    within = m.sum2 - np.einsum("k,ki,kj->ij", count, ubar, ubar)
  total = (within + np.einsum("k,ki,kj->ij", count, means_c, means_c)) / n
  inv_std = _inv_std(np.diagonal(total), mean, xp=np)
  return mean, inv_std, count, means_c, ubar, within_k, total


def fit_from_moments(moments: Moments, shrinkage: float | str = 1e-3):
  """(weights [D, K], bias [K]) from accumulated moments: `fit_analytic` of all rows seen."""
  auto = _is_auto(shrinkage)
  mean, inv_std, count, means_c, ubar, within_k, total = _moment_stats(moments)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  if not auto:
    corr = total * inv_std[:, None] * inv_std[None, :]
    return _solve_floor(f32(mean), f32(inv_std), f32(corr), f32(count), f32(means_c), jnp.float32(shrinkage))
  if not moments.auto:
    raise ValueError('shrinkage="auto" needs moments accumulated with moments_init(..., auto=True)')
  n_k = np.maximum(count, 1.0)
  cov_s = within_k * (inv_std[:, None] * inv_std[None, :]) / n_k[:, None, None]
  # sum over the class of |z|^4, z = (u - ubar) / class std (constant features 0), from the raw sums:
  # |z|^2 = a.w - 2 u.g + c with a = u*u, w = 1/class var, g = w*ubar, c = ubar.g.
  var = np.diagonal(within_k, axis1=1, axis2=2) / n_k[:, None]
  _, varying = _class_scale(var * np.square(inv_std), xp=np)
  w = np.where(varying, 1.0 / np.where(varying, var, 1.0), 0.0)
  g = w * ubar
  c = np.sum(g * ubar, axis=1)
  quad = lambda a, mat, b: np.einsum("ki,kij,kj->k", a, mat, b)
  fourth = (quad(w, moments.sum4, w) + 4 * quad(g, moments.sum2, g) + count * c * c
            - 4 * quad(w, moments.sum3, g) + 2 * c * np.sum(w * np.diagonal(moments.sum2, axis1=1, axis2=2), 1)
            - 4 * c * np.sum(g * moments.sum1, 1))
  weights, bias, _ = _solve_auto(f32(mean), f32(inv_std), f32(count), f32(means_c * inv_std), f32(cov_s),
                                 f32(fourth))
  return weights, bias


def fit_analytic_streaming(batches: Iterable, num_classes: int, shrinkage: float | str = 1e-3):
  """`fit_analytic` in one pass over `batches`, an iterable of (x [B, D], y [B]) (e.g. read from
  disk): memory is O(D^2) (3 K D^2 for shrinkage="auto"), whatever the number of rows."""
  auto = _is_auto(shrinkage)
  moments = None
  for x, y in batches:
    if moments is None:
      moments = moments_init(num_classes, np.shape(x)[1], auto=auto)
    moments = moments_update(moments, x, y)
  if moments is None:
    raise ValueError("no batches")
  return fit_from_moments(moments, shrinkage)


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


# ---------------------------------------------------------------- the note's comparison (configs/logreg.py)
#
# Every method is fitted on the same standardised features and scored from its class logits
# by the same exact log-softmax (scikit-learn's through `decision_function`: its
# `predict_log_proba` can underflow). A class absent from the training rows in use gets the
# logit (row maximum - 30) for every method alike: it is never predicted, and a test row of
# that class costs ~30 nats. `analytic` is timed after a first, compiling call (compile_s
# apart); MLE's time includes the trainer's compile and its one checkpoint.

METHODS = ("analytic", "analytic_auto", "mle", "mle_long", "sklearn_logreg", "sklearn_lda", "sklearn_lda_auto")
CANDIDATES = ("analytic", "analytic_auto")   # the methods compared with every other (paired intervals)


def load_problem(config, name: str):
  """(train, test, num_classes, problem) of data set `name`: `synthetic` samples the
  shared-covariance Gaussians of config.data.synthetic (problem = their true parameters),
  any other name is read by `lmsys.data.load_arrays` (problem None)."""
  from lmsys import data  # pylint: disable=g-import-not-at-top
  from lmsys.tasks import classification  # pylint: disable=g-import-not-at-top
  if name == "synthetic":
    s = config.data.synthetic
    problem = gaussian_problem(s.dim, s.num_classes, s.separation, seed=config.seed)
    train = sample_gaussian(problem, s.num_train, seed=config.seed + 1)
    test = sample_gaussian(problem, s.num_test, seed=config.seed + 2)
    return {"x": train[0], "y": train[1]}, {"x": test[0], "y": test[1]}, s.num_classes, problem
  options = dict(config.data.text) if name.startswith("fewclue/") else {}
  ds = data.load_arrays(name, data_dir_for(config, name), seed=config.seed,
                        **classification.data_options(config, name), **options)
  return ds["train"], ds["test"], ds.num_classes, None


def data_dir_for(config, name: str) -> str | None:
  """Fashion-MNIST's folder is its own config key (data.fashion_mnist_dir); the rest use data.data_dir."""
  return (config.data.fashion_mnist_dir if name == "fashion_mnist" else config.data.data_dir) or None


def fit(method: str, config, x, y, num_classes: int, *, workdir: str, writer, name: str):
  """(predict, info): predict(xs) -> class logits [N, K]; info: what the fit reports besides
  scores (fit_s and compile_s for the analytic rule; steps, relative_gradient, converged for
  MLE; iterations, converged for scikit-learn's lbfgs)."""
  if method in ("analytic", "analytic_auto"):
    from lmsys import timing  # pylint: disable=g-import-not-at-top
    shrinkage = "auto" if method == "analytic_auto" else config.analytic.shrinkage
    measured = timing.benchmark(lambda: fit_analytic(x, y, num_classes, shrinkage=shrinkage), jit=False, repeats=1)
    w, b = fit_analytic(x, y, num_classes, shrinkage=shrinkage)
    return (lambda xs: np.asarray(logits(xs, w, b)),
            {"fit_s": measured.best_seconds, "compile_s": measured.compile_seconds})
  if method in ("mle", "mle_long"):
    return _fit_mle(config, x, y, num_classes, workdir=workdir, writer=writer, name=name,
                    min_steps=config.mle.long_min_steps if method == "mle_long" else 0)
  from sklearn import discriminant_analysis, linear_model  # pylint: disable=g-import-not-at-top
  if method == "sklearn_logreg":
    model = linear_model.LogisticRegression(C=config.sklearn.C, max_iter=config.sklearn.max_iter, solver="lbfgs")
  elif method == "sklearn_lda":
    model = discriminant_analysis.LinearDiscriminantAnalysis(solver="svd")
  elif method == "sklearn_lda_auto":  # Ledoit-Wolf per class: what analytic_auto reproduces
    model = discriminant_analysis.LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
  else:
    raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
  model.fit(x, y)
  info = {}
  if method == "sklearn_logreg":
    iterations = int(np.max(model.n_iter_))
    info = {"iterations": iterations, "converged": iterations < config.sklearn.max_iter}
  return (lambda xs: sklearn_logits(model, xs, num_classes)), info


def _fit_mle(config, x, y, num_classes, *, workdir, writer, name, min_steps=0):
  """Softmax regression by the shared trainer: the note's GD baseline (`mle.epochs` epochs).

  `min_steps` > 0 trains at least that many steps (`mle_long`): on small training sets 10
  epochs are a few hundred Adam steps, far from the MLE. `converged`: the full-batch
  gradient at the end is at most `mle.converged_rel_grad` of the gradient at zero weights
  (`relative_gradient`).
  """
  import math  # pylint: disable=g-import-not-at-top

  from lmsys.models.mlp import MLP  # pylint: disable=g-import-not-at-top
  from lmsys.tasks import classification  # pylint: disable=g-import-not-at-top
  model = MLP(hidden=(), num_classes=num_classes)  # no hidden layer: softmax regression
  run_config = config.copy_and_resolve_references()
  steps = max(math.ceil(config.mle.epochs * len(y) / config.train.batch_size), min_steps)
  run_config.train.num_steps = min(config.train.num_steps, steps)
  result, _ = classification.train_classifier(run_config, workdir, writer, model=model, train_x=x, train_y=y,
                                              name=name)
  apply = jax.jit(lambda xs: model.apply({"params": result.params}, xs))
  predict = lambda xs: np.asarray(apply(jnp.asarray(xs)))
  rel = relative_gradient(x, predict(x), y)
  return predict, {"steps": result.step, "relative_gradient": rel,
                   "converged": bool(rel <= config.mle.converged_rel_grad)}


def sklearn_logits(model, xs, num_classes: int) -> np.ndarray:
  """scikit-learn's class logits (decision_function; binary: [0, log-odds]), -inf for classes absent from train."""
  scores = model.decision_function(xs)
  if scores.ndim == 1:
    scores = np.stack([np.zeros_like(scores), scores], axis=1)
  out = np.full((len(xs), num_classes), -np.inf)
  out[:, model.classes_] = scores
  return out


def absent_at_minus_30(logits_, present) -> np.ndarray:
  """Logits of classes absent from the training rows -> row maximum - 30 (every method alike)."""
  logits_ = np.array(logits_, np.float64)
  if not present.all():
    logits_[:, ~present] = logits_[:, present].max(1, keepdims=True) - 30.0
  return logits_


def softmax_gradient(x, logits_, y) -> np.ndarray:
  """Gradient of the mean softmax cross-entropy of a linear model with these logits, with
  respect to (weights [D, K], bias [K]), flattened: [x, 1]^T (softmax(logits) - onehot(y)) / N."""
  x, logits_ = np.asarray(x, np.float64), np.asarray(logits_, np.float64)
  probs = np.exp(logits_ - np.logaddexp.reduce(logits_, axis=1, keepdims=True))
  residual = probs - np.eye(logits_.shape[1])[np.asarray(y)]
  return np.concatenate([(x.T @ residual).ravel(), residual.sum(0)]) / len(x)


def relative_gradient(x, logits_, y) -> float:
  """|gradient at these logits| / |gradient at zero weights| (`softmax_gradient`): a
  scale-free test of how far an iterative fit is from a stationary point."""
  at_zero = np.linalg.norm(softmax_gradient(x, np.zeros_like(np.asarray(logits_, np.float64)), y))
  return float(np.linalg.norm(softmax_gradient(x, logits_, y)) / max(at_zero, 1e-300))


def compare(config, train, test, num_classes: int, problem=None, *, workdir: str, writer, tag: str) -> dict:
  """Every method of config.methods on (train, test), standardised on train: one dict per
  method (n_train, train_acc, test_acc, test_logloss, gap, and the fit's info), `bayes`
  where the true `problem` is known, `chance` (the majority class of train, on test), and
  `intervals`: for each candidate method (CANDIDATES) against each other method, the paired
  bootstrap interval of the difference in test accuracy over test examples."""
  from lmsys import claims, data, timing  # pylint: disable=g-import-not-at-top
  x, test_x = data.standardize(train["x"], test["x"])
  x, test_x = x.astype(np.float32), test_x.astype(np.float32)
  y, test_y = train["y"], test["y"]
  present = np.bincount(y, minlength=num_classes) > 0
  row, correct = {}, {}
  for method in config.methods:
    if method == "mle_long" and "mle" in row and row["mle"]["steps"] >= config.mle.long_min_steps:
      row[method], correct[method] = dict(row["mle"]), correct["mle"]  # 10 epochs reach the minimum: the same run
      writer.write(0, f"{tag}/{method}", row[method])
      continue
    with timing.Stopwatch() as watch:
      predict, info = fit(method, config, x, y, num_classes, workdir=workdir, writer=writer,
                          name=f"{tag}/{method}".replace("/", "_"))
    train_logits, test_logits = (absent_at_minus_30(predict(xs), present) for xs in (x, test_x))
    train_eval, test_eval = evaluate(train_logits, y), evaluate(test_logits, test_y)
    correct[method] = test_logits.argmax(1) == test_y
    row[method] = {"n_train": len(y), **({"steps": info.pop("steps")} if "steps" in info else {}),
                   "train_acc": train_eval["accuracy"], "test_acc": test_eval["accuracy"],
                   "test_logloss": test_eval["log_loss"], "gap": train_eval["accuracy"] - test_eval["accuracy"],
                   **({"fit_s": watch.seconds} if "fit_s" not in info else {}), **info}
    writer.write(0, f"{tag}/{method}", row[method])
  if problem is not None:  # the true parameters: the best any classifier can do
    bayes_logits_ = bayes_logits(test["x"], problem)
    bayes = evaluate(bayes_logits_, test_y)
    correct["bayes"] = bayes_logits_.argmax(1) == test_y
    row["bayes"] = {"n_train": len(y), "test_acc": bayes["accuracy"], "test_logloss": bayes["log_loss"]}
    writer.write(0, f"{tag}/bayes", row["bayes"])
  row["chance"] = {"test_acc": float(np.mean(test_y == np.bincount(y).argmax()))}
  row["intervals"] = {f"{a}-{b}": claims.paired_bootstrap(correct[a], correct[b], seed=config.seed)
                      for a in CANDIDATES if a in correct for b in correct if b != a}
  return row


def accuracy_figure(results, methods):
  """Test accuracy per dataset and method, one panel per regime (hatched: train accuracy)."""
  from lmsys import metrics  # pylint: disable=g-import-not-at-top
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
