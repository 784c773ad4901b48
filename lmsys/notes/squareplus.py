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

import os

import numpy as np
from scipy import optimize

from lmsys.config import ConfigError, get, load_config_file


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


# ---------------------------------------------------------------- trained models (configs/squareplus.py)
#
# The trained models are other experiments' own configs, trained through the library's task
# code once per activation at equal steps: the MLP of configs/mlp.py
# (lmsys.tasks.classification) and, where configs/attention_approx_lm.py exists with a
# `model.activation` key, its char LM (lmsys.tasks.lm).

def check_trained_configs(config) -> None:
  """validate()'s checks of the derived configs: every MLP (activation, seed) and char-LM config."""
  from lmsys import checks  # pylint: disable=g-import-not-at-top
  from lmsys.data import char_corpus  # pylint: disable=g-import-not-at-top
  from lmsys.tasks import classification  # pylint: disable=g-import-not-at-top
  for act in config.mlp.activations:
    for seed in config.mlp.seeds:
      c = mlp_config(config, act, seed)
      checks.trained(c)
      classification.check_data(c, c.data.name)
  configs = lm_configs(config)
  for c in (configs.values() if isinstance(configs, dict) else ()):
    checks.trained(c)
    try:  # files only; the corpus is read by run()
      char_corpus.check_available(c.data.data_dir or None)
    except ConfigError as e:
      raise ConfigError(f"config key 'attention_lm' ({config.attention_lm.config}): {e}") from None


def mlp_config(config, activation: str, seed: int):
  """configs/mlp.py (config.mlp.config and .variant) for one activation and seed, with
  config.mlp's dataset and number of steps."""
  c = load_config_file(config.mlp.config, config.mlp.variant or None)
  c.data.name = config.mlp.dataset
  c.data.data_dir = config.mlp.data_dir  # "" = the loader's own default
  c.model.activation = activation
  c.seed = seed
  c.train.num_steps = config.mlp.num_steps
  c.train.eval_every = c.train.checkpoint_every = config.mlp.num_steps
  c.train.progress_bar = False
  return c


def run_mlp(config, workdir, writer) -> dict:
  """{activation: the MLP's final metrics, means over config.mlp.seeds, and the per-seed test
  accuracies (`test_accuracy_seeds`, in seed order)}."""
  from lmsys.tasks import classification  # pylint: disable=g-import-not-at-top
  rows = {}
  for act in config.mlp.activations:
    runs = [classification.train_mlp(mlp_config(config, act, seed), workdir, writer, name=f"mlp_{act}_seed{seed}")
            for seed in config.mlp.seeds]
    row = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    if len(runs) > 1:
      row["test_accuracy_std"] = float(np.std([r["test_accuracy"] for r in runs]))
    row["seeds"] = len(runs)
    writer.write(config.mlp.num_steps, f"mlp/{act}", row)
    rows[act] = {**row, "test_accuracy_seeds": [r["test_accuracy"] for r in runs]}
  return rows


def text_lm_corpus(c, corpora: dict):
  """The char corpus of config `c`, read once per distinct data setting of this run."""
  from lmsys.tasks import lm  # pylint: disable=g-import-not-at-top
  key = (c.data.data_dir, c.data.min_count, c.data.max_documents, c.seed)
  if key not in corpora:
    corpora[key] = lm.load_corpus(c)
  return corpora[key]


def lm_configs(config):
  """{activation: the char-LM config to train} from configs/attention_approx_lm.py, or a reason to skip."""
  from lmsys.nn import attention  # pylint: disable=g-import-not-at-top
  cfg = config.attention_lm
  if not cfg.activations:
    return "no activations configured"
  if not os.path.isfile(cfg.config):
    return f"{cfg.config} does not exist"
  out = {}
  for act in cfg.activations:
    c = load_config_file(cfg.config, cfg.variant or None)
    if get(c, "model.activation") is None:
      return f"{cfg.config} has no model.activation key"
    c.model.activation = act
    c.train.num_steps = c.train.eval_every = c.train.checkpoint_every = cfg.num_steps
    if get(c, "kinds") is not None:
      missing = [k for k in cfg.kinds if k not in c.kinds]
      if missing:
        raise ConfigError(f"config key 'attention_lm.kinds': {missing} not in {cfg.config}'s kinds")
      c.kinds = {k: c.kinds[k].to_dict() for k in cfg.kinds}
    if get(c, "contexts") is not None:
      c.contexts = tuple(cfg.contexts)
    c.train.progress_bar = False
    for name, spec in c.kinds.items():
      if spec.get("kind") not in attention.KINDS:
        raise ConfigError(f"{cfg.config}: kinds.{name}.kind {spec.get('kind')!r} is not an attention kind")
    out[act] = c
  return out


def run_attention_lm(config, workdir):
  """The char LM of configs/attention_approx_lm.py per FFN activation, or why it was not run."""
  from lmsys import metrics  # pylint: disable=g-import-not-at-top
  from lmsys.tasks import lm  # pylint: disable=g-import-not-at-top
  configs = lm_configs(config)
  if isinstance(configs, str):
    return {"skipped": configs}
  rows, corpora = {}, {}
  for act, c in configs.items():
    subdir = os.path.join(workdir, "attention_lm", act)
    with metrics.Writer(subdir) as sub_writer:
      result = lm.train_every_kind(c, subdir, sub_writer, text_lm_corpus(c, corpora), log=None)
    metrics.write_json(os.path.join(subdir, "results.json"), result)
    rows[act] = result
  return rows


def speed_figure(speed, mlp_rows):
  """Each activation's time over relu's, and the MLP's test accuracy per activation."""
  from lmsys import metrics  # pylint: disable=g-import-not-at-top
  plt = metrics.pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
  names = list(speed)
  x = np.arange(len(names))
  a.bar(x - 0.2, [speed[n]["forward_ratio_to_relu"] for n in names], 0.4, label="forward")
  a.bar(x + 0.2, [speed[n]["forward_backward_ratio_to_relu"] for n in names], 0.4, label="forward+backward")
  a.set_xticks(x, names, rotation=20)
  a.set(ylabel="time / relu time", title="activation speed")
  a.legend(fontsize=8)
  acts = list(mlp_rows)
  b.bar(np.arange(len(acts)), [mlp_rows[k]["test_accuracy"] for k in acts])
  low = min(mlp_rows[k]["test_accuracy"] for k in acts)
  b.set_ylim(max(0.0, low - 0.02), min(1.0, max(mlp_rows[k]["test_accuracy"] for k in acts) + 0.01))
  b.set_xticks(np.arange(len(acts)), acts, rotation=20)
  b.set(ylabel="test accuracy", title="MLP at equal steps")
  return fig


def curve_figure(const):
  """SquarePlus at the note's b values against softplus, and their gaps."""
  from lmsys import metrics  # pylint: disable=g-import-not-at-top
  plt = metrics.pyplot()
  xs = np.linspace(-6, 6, 601)
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
  a.plot(xs, softplus_np(xs), "k", label="softplus")
  for b_value, label in ((0.0, "b=0 (relu)"), (const["minimax_b"], "b=minimax"),
                         (const["b_min_above_softplus"], "b=4 log^2 2"), (4.0, "b=4")):
    a.plot(xs, squareplus_np(xs, b_value), label=label)
    if b_value > 0:
      b.plot(xs, gap(xs, b_value), label=label)
  b.axhline(0, color="k", lw=0.8)
  a.legend(fontsize=8)
  b.set(title="squareplus - softplus")
  b.legend(fontsize=8)
  return fig
