"""Importance-weighted estimates of log p(x): note 6 (kexue 8791), Burda et al. 2015.

With log weights log w_s = log q(x, z_s) - log p(z_s|x), z_s ~ p(z|x) (note's notation:
q = generative model, p(z|x) = proposal),
  IWAE_k(x) = log (1/k) sum_{s<k} w_s,
a lower bound on log q(x) in expectation that grows with k (k=1 is the ELBO) and
converges to log q(x) as k -> infinity. Training minimises -IWAE_k (`iwae_loss`);
evaluation with k = 5,000 estimates log p(x) (`estimate_log_px`).

`estimate_log_px` scans over chunks of `chunk_size` samples with a running
logsumexp, so memory does not grow with k. One pass also yields the lower bounds
IWAE_k for every k dividing chunk_size: the samples of each chunk are cut into
groups of k, and IWAE_k is averaged over the num_samples/k groups -- the same
expectation as one k-sample draw, with num_samples/k times less variance.
Its cost is the model's log weights (lmsys/models/vae.py runs them in cache-sized blocks
of samples); `python scripts/bench.py iwae_log_px` compares it with this machine's matmul FLOP rate.

Standard errors (per image):
  * log p(x) estimate: delta method, se = sqrt(sum w^2 / (sum w)^2 - 1/k)
    (= sqrt(1/ESS - 1/k), ESS = (sum w)^2 / sum w^2). It uses the sample variance of
    the weights, so it is optimistic when the weights are heavy-tailed and the rare
    large weights have not been seen yet.
  * IWAE_k bounds: std over the num_samples/k groups / sqrt(num_samples/k).
Both variances are accumulated as (mean, sum of squared deviations) per chunk, two-pass,
merged across chunks by Chan et al.'s pairwise update (the weights in units of their
running max), never as a sum of squares minus a squared mean: with log weights near
-250 in float32 that difference is rounding noise (se off by factors 0 to 3).
Averages over images: se(mean) = sqrt(sum_i se_i^2) / N (independent estimates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import data

# (rng, num_samples) -> log weights [num_samples, B]; everything else is closed over.
LogWeightFn = Callable[[jax.Array, int], jax.Array]


def log_mean_exp(log_w, axis=0):
  return jax.nn.logsumexp(log_w, axis=axis) - jnp.log(log_w.shape[axis])


def iwae_loss(log_w):
  """-mean_b IWAE_k(x_b) from log weights [k, B]; k=1 is the negative ELBO (VAE loss)."""
  return -jnp.mean(log_mean_exp(log_w, axis=0))


def estimate_log_px(log_weight_fn: LogWeightFn, rng, num_samples: int, chunk_size: int,
                    bound_ks: Sequence[int] = (1,)) -> dict[str, jax.Array]:
  """log p(x) from num_samples importance samples in chunks; all outputs are [B].

  Returns log_px (the num_samples estimate), log_px_se (delta method), ess, and for
  each k in bound_ks: iwae_<k> (IWAE_k averaged over groups of k) and iwae_<k>_se.
  Memory is that of one chunk, whatever num_samples. Call inside jit.
  """
  if num_samples % chunk_size:
    raise ValueError(f"num_samples {num_samples} must be a multiple of chunk_size {chunk_size}")
  bad = [k for k in bound_ks if chunk_size % k]
  if bad:
    raise ValueError(f"bound ks {bad} must divide chunk_size {chunk_size}")
  num_chunks = num_samples // chunk_size

  def step(carry, index):
    running_max, weights, bounds = carry
    log_w = log_weight_fn(jax.random.fold_in(rng, index), chunk_size)  # [chunk, B]
    seen = index.astype(jnp.float32) * chunk_size  # samples before this chunk
    # Weights in units of the running max (so in (0, 1]); their running mean and M2
    # rescale when the max moves.
    new_max = jnp.maximum(running_max, log_w.max(0))
    rescale = jnp.exp(running_max - new_max)
    mean, m2 = weights
    weights = _combine((seen, mean * rescale, m2 * rescale ** 2),
                       _moments(jnp.exp(log_w - new_max)))
    new_bounds = {}
    for k in bound_ks:
      groups = log_w if k == 1 else log_mean_exp(log_w.reshape(chunk_size // k, k, -1), axis=1)
      new_bounds[k] = _combine((seen / k, *bounds[k]), _moments(groups))
    return (new_max, weights, new_bounds), None

  batch = jax.eval_shape(lambda: log_weight_fn(rng, 1)).shape[1]
  zeros = jnp.zeros((batch,), jnp.float32)
  init = (jnp.full((batch,), -jnp.inf), (zeros, zeros), {k: (zeros, zeros) for k in bound_ks})
  (running_max, (mean_w, m2_w), bounds), _ = jax.lax.scan(step, init, jnp.arange(num_chunks))

  # In units of max w: sum w = k mean_w, sum (w - mean w)^2 = m2_w, and the delta-method
  # se sqrt(sum w^2 / (sum w)^2 - 1/k) = sqrt(m2_w) / (k mean_w), without the cancellation.
  out = {
      "log_px": running_max + jnp.log(mean_w),
      "log_px_se": jnp.sqrt(m2_w) / (num_samples * mean_w),
      "ess": num_samples / (1.0 + m2_w / (num_samples * mean_w ** 2)),
  }
  for k in bound_ks:
    groups = num_samples // k
    mean, m2 = bounds[k]
    out[f"iwae_{k}"] = mean
    out[f"iwae_{k}_se"] = jnp.sqrt(m2 / max(groups - 1, 1) / groups)
  return out


def _moments(values):
  """(count, mean, sum of squared deviations) over axis 0, two-pass."""
  mean = values.mean(0)
  return values.shape[0], mean, jnp.sum((values - mean) ** 2, axis=0)


def _combine(a, b):
  """(mean, M2) of the union of two sets given each one's (count, mean, M2): Chan et al.'s
  pairwise update, stable where sum of squares minus squared mean is not (IWAE_k ~ -250
  with a spread of 0.1 leaves nothing of the variance in float32)."""
  (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
  n = n_a + n_b
  delta = mean_b - mean_a
  return mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n)


def make_estimator(apply_fn, num_samples: int, chunk_size: int, bound_ks: Sequence[int] = (1,)):
  """A jitted (params, x_batch, rng) -> estimate_log_px outputs; build once, call per batch.

  apply_fn(params, x_batch, rng, num_samples) -> log weights [num_samples, B].
  """
  @jax.jit
  def estimator(params, x_batch, rng):
    fn = lambda r, s: apply_fn(params, x_batch, r, s)
    return estimate_log_px(fn, rng, num_samples, chunk_size, tuple(bound_ks))
  return estimator


def evaluate_dataset(estimator, params, x: np.ndarray, rng, batch_size: int) -> dict[str, np.ndarray]:
  """`estimator` (from make_estimator) over a dataset in batches: per-image arrays [N].

  Batches of exactly batch_size (the last one padded, its padding dropped), so
  one compilation serves all; batch i draws its samples from fold_in(rng, offset).
  """
  return data.map_batches(
      lambda batch, offset: estimator(params, batch["x"], jax.random.fold_in(rng, offset)),
      {"x": x}, batch_size)


def summarize(per_image: dict[str, np.ndarray]) -> dict[str, float]:
  """Dataset means of per-image estimates; *_se keys become the standard error of the mean."""
  n = len(next(iter(per_image.values())))
  out = {}
  for key, values in per_image.items():
    if key.endswith("_se"):
      out[key] = float(np.sqrt(np.sum(np.asarray(values, np.float64) ** 2)) / n)
    else:
      out[key] = float(np.mean(values))
  return out
