"""Note 8 (kexue 8833; Barron, arXiv 2112.11687): the maths of SquarePlus.

squareplus(x, b) = (x + sqrt(x^2 + b)) / 2 lives in `lmsys.nn.activations`. Here:
its derivative formulas, the two constants the note quotes, computed rather
than typed in (float64 numpy/scipy throughout),
  - the smallest b with squareplus >= softplus everywhere (note: 4 log^2 2),
  - the minimax b for |squareplus - softplus| (note: 1.52382103, error 0.075931),
and the speed comparison of activations (`activation_speed`, timed by lmsys.timing).

Both constants use one symmetry: squareplus(-x) = squareplus(x) - x and
softplus(-x) = softplus(x) - x, so their gap is even in x and x >= 0 suffices.

  python -m experiments.run --config configs/squareplus.py --workdir runs/squareplus
"""

from __future__ import annotations

import numpy as np
from scipy import optimize


def squareplus_np(x, b):
  return 0.5 * (x + np.sqrt(x * x + b))


def softplus_np(x):
  return np.logaddexp(0.0, x)


def squareplus_grad(x, b):
  """The note's first derivative (1 + x / sqrt(x^2 + b)) / 2, always in (0, 1)."""
  return 0.5 * (1.0 + x / np.sqrt(x * x + b))


def squareplus_grad2(x, b):
  """The note's second derivative b / (2 (x^2 + b)^(3/2)) > 0: convex for b > 0."""
  return b / (2.0 * (x * x + b) ** 1.5)


def gap(x, b):
  """squareplus(x, b) - softplus(x), float64; even in x."""
  x = np.asarray(x, np.float64)
  return squareplus_np(x, b) - softplus_np(x)


def _extremum_of_gap(b, sign, x_max=60.0, grid=6001):
  """max_{x>=0} sign * gap(x, b): a dense grid, then Brent's method around the best point.

  Beyond x_max both functions are x + O(b / x) and x + O(e^-x), so the extremum is inside.
  """
  xs = np.linspace(0.0, x_max, grid)
  values = sign * gap(xs, b)
  i = int(np.argmax(values))
  lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
  if hi - lo <= 0:
    return float(values[i]), float(xs[i])
  res = optimize.minimize_scalar(lambda x: -sign * gap(x, b), bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-13})
  best_x, best = (float(res.x), float(-res.fun)) if -res.fun >= values[i] else (float(xs[i]), float(values[i]))
  return best, best_x


def min_gap(b):
  """min_x squareplus(x, b) - softplus(x) and where it is attained (x >= 0)."""
  value, x = _extremum_of_gap(b, sign=-1.0)
  return -value, x


def smallest_b_above_softplus(lo=0.5, hi=4.0):
  """The smallest b with squareplus(., b) >= softplus everywhere: the root of b -> min_x gap.

  min_x gap is increasing in b (squareplus is increasing in b), so the root is unique.
  """
  b = optimize.brentq(lambda b: min_gap(b)[0], lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
  return {"b": b, "argmin_x": min_gap(b)[1], "min_gap": min_gap(b)[0]}


def max_abs_error(b):
  """max_x |squareplus(x, b) - softplus(x)|."""
  return max(_extremum_of_gap(b, +1.0)[0], _extremum_of_gap(b, -1.0)[0])


def minimax_fit_to_softplus(lo=0.5, hi=3.0):
  """argmin_b max_x |squareplus(x, b) - softplus(x)| and the minimal error.

  The error curve is the max of a decreasing part (softplus above squareplus, worst at x=0)
  and an increasing part (squareplus above softplus): found by bounded Brent on the
  (unimodal) objective, then refined as the crossing of the two parts (equioscillation).
  """
  res = optimize.minimize_scalar(max_abs_error, bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-10})
  crossing = lambda b: _extremum_of_gap(b, +1.0)[0] - _extremum_of_gap(b, -1.0)[0]
  b = optimize.brentq(crossing, res.x - 1e-3, res.x + 1e-3, xtol=1e-15)
  above, x_above = _extremum_of_gap(b, +1.0)
  below, x_below = _extremum_of_gap(b, -1.0)
  return {"b": b, "max_error": max(above, below), "x_squareplus_above": x_above,
          "x_squareplus_below": x_below, "bounded_brent_b": float(res.x)}


def constants():
  """Every number the note quotes, computed; plus the closed forms where one exists."""
  above = smallest_b_above_softplus()
  fit = minimax_fit_to_softplus()
  return {
      "b_min_above_softplus": above["b"],
      "b_min_above_softplus_closed_form_4log2sq": 4 * np.log(2.0) ** 2,
      "b_min_above_softplus_argmin_x": above["argmin_x"],
      "minimax_b": fit["b"],
      "minimax_max_error": fit["max_error"],
      "minimax_error_at_x0_closed_form": np.log(2.0) - np.sqrt(fit["b"]) / 2,
      "minimax_x_where_squareplus_above": fit["x_squareplus_above"],
      # b=4 is JAX's default: same curvature at 0 as softplus (1/4), i.e. 1/(2 sqrt(b)) = 1/4.
      "b4_curvature_at_0": squareplus_grad2(0.0, 4.0),
      "softplus_curvature_at_0": 0.25,
      "b4_max_error": max_abs_error(4.0),
  }


def activation_speed(names, size=1 << 24, repeats=10, seed=0):
  """Forward and forward+backward time of each named activation on one float32 array.

  Returns {name: {"forward_ms", "forward_backward_ms", "forward_ratio_to_relu", ...}},
  best of `repeats` calls after compilation (lmsys.timing.benchmark). The
  backward pass is jax.grad of sum(act(x)), i.e. act'(x) elementwise.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lmsys import timing  # pylint: disable=g-import-not-at-top
  from lmsys.nn import activations
  x = jax.random.normal(jax.random.key(seed), (size,), jnp.float32) * 3.0
  out = {}
  for name in names:
    act = activations.get(name)
    backward = jax.grad(lambda v, act=act: jnp.sum(act(v)))
    out[name] = {"forward_ms": 1e3 * timing.benchmark(act, x, repeats=repeats).best_seconds,
                 "forward_backward_ms": 1e3 * timing.benchmark(backward, x, repeats=repeats).best_seconds}
  base = out.get("relu", next(iter(out.values())))
  for row in out.values():
    row["forward_ratio_to_relu"] = row["forward_ms"] / base["forward_ms"]
    row["forward_backward_ratio_to_relu"] = row["forward_backward_ms"] / base["forward_backward_ms"]
  return out
