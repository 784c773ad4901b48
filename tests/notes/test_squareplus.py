"""Note 8: the SquarePlus constants, derivative formulas and the b=0 limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.nn import activations
from lmsys.notes import squareplus as sp


def test_smallest_b_above_softplus_is_4_log2_squared():
  found = sp.smallest_b_above_softplus()
  assert found["b"] == pytest.approx(4 * np.log(2) ** 2, abs=1e-9)
  assert round(found["b"], 5) == 1.92181  # the note's digits
  assert abs(found["argmin_x"]) < 1e-3  # the binding point is x = 0
  # Just below the bound squareplus dips under softplus; at the bound it does not.
  assert sp.min_gap(found["b"] * (1 - 1e-6))[0] < 0
  assert sp.min_gap(found["b"])[0] > -1e-12


def test_minimax_fit_to_softplus():
  fit = sp.minimax_fit_to_softplus()
  assert fit["b"] == pytest.approx(1.52382103, abs=5e-8)
  assert fit["max_error"] == pytest.approx(0.075931, abs=5e-7)
  # Equioscillation: the error is attained with both signs, and moving b either way makes it worse.
  assert sp.max_abs_error(fit["b"] * 1.001) > fit["max_error"]
  assert sp.max_abs_error(fit["b"] / 1.001) > fit["max_error"]
  assert -sp.min_gap(fit["b"])[0] == pytest.approx(fit["max_error"], rel=1e-9)


def test_derivative_formulas_match_autodiff():
  xs = np.linspace(-8.0, 8.0, 101)
  with jax.enable_x64(True):  # local x64 context (jax.experimental.enable_x64 in older jax)
    for b in (0.5, sp.minimax_fit_to_softplus()["b"], 4.0):
      f = lambda x, b=b: activations.squareplus(x, b)
      d1 = jax.vmap(jax.grad(f))(jnp.asarray(xs, jnp.float64))
      d2 = jax.vmap(jax.grad(jax.grad(f)))(jnp.asarray(xs, jnp.float64))
      np.testing.assert_allclose(d1, sp.squareplus_grad(xs, b), rtol=1e-12, atol=1e-14)
      np.testing.assert_allclose(d2, sp.squareplus_grad2(xs, b), rtol=1e-10, atol=1e-14)
      assert np.all(sp.squareplus_grad(xs, b) > 0) and np.all(sp.squareplus_grad(xs, b) < 1)
      assert np.all(sp.squareplus_grad2(xs, b) > 0)


def test_b0_is_relu_and_b4_matches_softplus_curvature():
  x = jnp.linspace(-5.0, 5.0, 1001)
  np.testing.assert_array_equal(activations.squareplus(x, 0.0), jax.nn.relu(x))
  g = jax.vmap(jax.grad(lambda v: activations.squareplus(v, 0.0)))(jnp.array([-2.0, -0.1, 0.1, 2.0]))
  np.testing.assert_array_equal(g, [0.0, 0.0, 1.0, 1.0])
  softplus_curvature = jax.grad(jax.grad(jax.nn.softplus))(0.0)
  assert sp.squareplus_grad2(0.0, 4.0) == pytest.approx(float(softplus_curvature), abs=1e-7)
  assert activations.get("squareplus") is activations.squareplus


def test_gap_is_even():
  xs = np.linspace(0, 30, 301)
  np.testing.assert_allclose(sp.gap(xs, 1.3), sp.gap(-xs, 1.3), atol=1e-13)
