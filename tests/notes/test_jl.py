"""Note 4: the JL bounds against exact and Monte-Carlo tails, and the blocked distortion code."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys import config as config_lib
from lmsys import trainer
from lmsys.notes import jl

NS = (16, 64, 256, 1024)
EPS = (0.1, 0.25, 0.5, 0.9)


def test_exact_tails_never_exceed_the_bounds():
  for n, eps in itertools.product(NS, EPS):
    assert jl.norm_tail_exact(n, eps) <= jl.norm_tail_bound(n, eps)
    assert jl.inner_tail_exact(n, eps) <= jl.inner_tail_bound(n, eps)


def test_monte_carlo_tails_within_3_standard_errors_of_the_bound_and_exact():
  samples = 10000
  for n in (16, 64, 256):
    norm_mc, inner_mc = jl.monte_carlo_tails(jax.random.key(n), n, EPS, samples)
    for eps, p_norm, p_inner in zip(EPS, norm_mc, inner_mc):
      for p_mc, exact, bound in ((p_norm, jl.norm_tail_exact(n, eps), jl.norm_tail_bound(n, eps)),
                                 (p_inner, jl.inner_tail_exact(n, eps), jl.inner_tail_bound(n, eps))):
        se = np.sqrt(max(exact * (1 - exact), 1 / samples) / samples)
        assert p_mc <= bound + 3 * se, (n, eps, p_mc, bound)
        assert abs(p_mc - exact) <= 4 * se, (n, eps, p_mc, exact)


def test_inner_tail_exact_matches_gaussian_limit():
  # For large n, sqrt(n) <u, v> is close to N(0, 1).
  from scipy import stats
  assert jl.inner_tail_exact(4096, 0.05) == pytest.approx(2 * stats.norm.sf(0.05 * 64), rel=0.05)


def test_pairwise_distortion_matches_brute_force():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(37, 12)).astype(np.float32) * rng.uniform(0.5, 2, size=(37, 1))
  gaussian = rng.normal(size=(2, 12, 30)).astype(np.float32)
  grid = [3, 7, 8, 20, 30]
  worst, used, skipped = jl.pairwise_distortion(x, gaussian, grid, block=16)
  assert (used, skipped) == (37 * 36 // 2, 0)
  i, j = np.triu_indices(37, 1)
  dx = np.sum((x[i] - x[j]) ** 2, -1).astype(np.float64)
  for t in range(2):
    for k, n in enumerate(grid):
      y = x.astype(np.float64) @ gaussian[t, :, :n] / np.sqrt(n)
      expected = np.max(np.abs(np.sum((y[i] - y[j]) ** 2, -1) / dx - 1))
      assert worst[t, k] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_pairwise_distortion_skips_duplicates():
  x = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
  _, used, skipped = jl.pairwise_distortion(x, np.ones((1, 2, 4), np.float32), [4])
  assert (used, skipped) == (2, 1)


def test_jl_bound_dimension_keeps_all_distances():
  rng = np.random.default_rng(1)
  num, eps = 60, 0.5
  n = int(np.ceil(jl.jl_dim_bound(num, eps)))
  x = rng.normal(size=(num, 50)).astype(np.float32)
  worst, _, _ = jl.pairwise_distortion(x, rng.normal(size=(10, 50, n)).astype(np.float32), [n])
  assert np.mean(worst[:, 0] < eps) >= 0.9  # the lemma promises >= (N-1)/N per trial


def test_smallest_good_dim():
  grid = [10, 20, 30, 40]
  assert jl.smallest_good_dim(grid, [0.9, 0.4, 0.6, 0.3], 0.5) == 40
  assert jl.smallest_good_dim(grid, [0.9, 0.4, 0.45, 0.3], 0.5) == 20
  assert jl.smallest_good_dim(grid, [0.9, 0.4, 0.45, 0.6], 0.5) is None


@pytest.mark.parametrize("num", [10, 100, 1000, 10000])
def test_dimension_bounds_follow_from_the_norm_lemma_by_a_union_bound(num):
  """The note's N-point claims, derived from its own norm lemma: at n >= 24 log N / eps^2 the
  N(N-1)/2 pair distances all stay within 1 +- eps except with probability <= 1/N; at
  16 log N / eps^2 the failure probability is < 1 (a good projection exists) but not <= 1/N.
  Checks jl_dim_bound against norm_tail_bound (and the exact tail) rather than a formula."""
  pairs = num * (num - 1) / 2
  for eps in (0.1, 0.25, 0.5, 0.9):
    n24 = int(np.ceil(jl.jl_dim_bound(num, eps)))
    n16 = int(np.ceil(jl.jl_dim_bound(num, eps, 16.0)))
    assert n16 < n24
    assert pairs * jl.norm_tail_bound(n24, eps) <= 1 / num
    assert pairs * jl.norm_tail_exact(n24, eps) <= 1 / num
    assert pairs * jl.norm_tail_bound(n16, eps) < 1
    assert pairs * jl.norm_tail_bound(n16, eps) > 1 / num
    # Exactly at the (real-valued) bound, the union bound is (N-1)/N^2: 24 is the constant
    # that the lemma's exp(-eps^2 n / 8) calls for, not merely a sufficient one.
    assert pairs * jl.norm_tail_bound(jl.jl_dim_bound(num, eps), eps) == pytest.approx((num - 1) / num ** 2)
  assert isinstance(jl.sklearn_min_dim(1000, 0.5), int)


def test_simhash_angle_error_follows_theory():
  x = jax.random.normal(jax.random.key(0), (200, 32))
  pairs = np.array(list(itertools.combinations(range(40), 2)))
  rows = jl.simhash_cosine_errors(jax.random.key(1), x, pairs, [64, 4096])
  for row in rows:
    assert row["angle_rmse"] == pytest.approx(row["angle_rmse_theory"], rel=0.25)
  assert rows[1]["cosine_rmse"] < rows[0]["cosine_rmse"] / 4


def test_randomized_svd():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(120, 10)) @ rng.normal(size=(10, 60)) + 0.01 * rng.normal(size=(120, 60)),
                  jnp.float32)
  s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  best = np.sqrt(np.sum(s[5:] ** 2))
  u, sv, vt = jl.randomized_svd(jax.random.key(0), x, 5, 60)  # full sketch: exact
  assert jl.low_rank_error(x, u, sv, vt) == pytest.approx(best, rel=1e-3)
  u, sv, vt = jl.randomized_svd(jax.random.key(0), x, 5, 8)
  error_small = jl.low_rank_error(x, u, sv, vt)
  assert error_small >= best * (1 - 1e-4)
  u, sv, vt = jl.randomized_svd(jax.random.key(0), x, 5, 8, power_iters=2)
  assert best * (1 - 1e-4) <= jl.low_rank_error(x, u, sv, vt) <= error_small


def test_head_size_fit_and_search():
  optimizer = trainer.make_optimizer(config_lib.optimizer_defaults(name="adam", learning_rate=0.05), 200)
  targets = jax.random.randint(jax.random.key(0), (32,), 0, 32)
  fit = lambda d: jl.fit_attention_pattern(jax.random.key(1), targets, d, 2 * np.log(32), optimizer, 200)
  big, tiny = fit(8), fit(1)  # one compile: both live in the 8-wide bucket
  assert float(big["target_weight"]) > 0.9 and float(big["top1"]) == 1.0
  assert float(tiny["target_weight"]) < 0.5  # one dimension: only two directions +-1
  d, tried = jl.smallest_head_size(lambda d: d >= 5, 1, 16)
  assert d == 5 and len(tried) <= 6


def test_projection_grid_holds_both_bounds_and_sklearns_dimension():
  # N = 100, eps = 0.5: 24 ln(100) / 0.25 = 442.1 -> 443 (the top), 16 ln(100) / 0.25 = 294.7 -> 295,
  # scikit-learn's 4 ln(100) / (0.5^2 / 2 - 0.5^3 / 3) = 221.05 -> 221; 4 steps of 443 / 4 rounded.
  grid, top = jl.projection_grid(100, 0.5, 4)
  assert top == 443 and grid.tolist() == [111, 221, 222, 295, 332, 443]
