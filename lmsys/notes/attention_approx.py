"""Note 3 (kexue 8601): softmax attention as infinite-dimensional linear attention, measured.

Feature maps phi with phi(q) . phi(k) ~ exp(q . k) (lmsys.nn.attention: Taylor and limit
forms of order P, FAVOR+ with iid or orthogonal projections, and elu+1 linear attention,
which is no estimate of exp) against exact softmax attention: the relative error of the
kernel matrix and of the attention output, how often the kernel or the normaliser is <= 0,
and the numerical rank of the attention matrices (softmax's is not capped at the head size;
a map of F features caps it at F). Inputs are random q, k, v and the q, k of a briefly
trained char LM (configs/attention_approx.py).

  python -m experiments.run --config configs/attention_approx.py --workdir runs/attention_approx
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import metrics
from lmsys.data import char_corpus
from lmsys.nn import attention as A
from lmsys.tasks import lm


def errors(q, k, v, causal: bool, kind: str, **params) -> dict:
  """Relative Frobenius errors of the kernel and of the output vs softmax, and sign statistics."""
  exact_k = A.kernel_matrix(q, k, kind="softmax")
  approx_k = A.kernel_matrix(q, k, kind=kind, **params)
  allowed = jnp.tril(jnp.ones(exact_k.shape[-2:], bool)) if causal else jnp.ones(exact_k.shape[-2:], bool)
  diff = jnp.where(allowed, approx_k - exact_k, 0)
  kernel_err = jnp.linalg.norm(diff) / jnp.linalg.norm(jnp.where(allowed, exact_k, 0))
  exact = A.reference_attend(q, k, v, kind="softmax", causal=causal)
  approx = A.reference_attend(q, k, v, kind=kind, causal=causal, **params)
  output_err = jnp.linalg.norm(approx - exact) / jnp.linalg.norm(exact)
  normaliser = jnp.where(allowed, approx_k, 0).sum(-1)
  # Fractions over the visible (query, key) pairs only: a causal run's masked half is not a pair.
  visible_pairs = float(allowed.sum()) * (approx_k.size // allowed.size)  # float: n^2 * B * H overflows int32
  negative = float(jnp.where(allowed, approx_k < 0, False).sum()) / visible_pairs
  return {"kernel_rel_error": float(kernel_err), "output_rel_error": float(output_err),
          "negative_kernel_fraction": float(negative),
          "negative_normaliser_fraction": float((normaliser <= 0).mean())}


def error_table(config, q, k, v, causal: bool, rng) -> list[dict]:
  """One row per (method, feature dimension): Taylor and limit of each order in config.orders,
  FAVOR+ (iid and orthogonal, mean over config.favor_draws draws) of each dimension in
  config.favor_dims, and elu+1 linear attention."""
  d = q.shape[-1]
  rows = []
  for order in config.orders:
    for kind in ("taylor", "limit"):
      row = errors(q, k, v, causal, kind, order=order)
      rows.append({"method": f"{kind} P={order}", "family": kind, "feature_dim": A.feature_dim(kind, d, order=order),
                   **row})
  for orthogonal in (False, True):
    for m in config.favor_dims:
      draws = []
      for i in range(config.favor_draws):
        projection = A.favor_projection(jax.random.fold_in(rng, 1000 * m + i), m, d, orthogonal)
        draws.append(errors(q, k, v, causal, "favor", projection=projection))
      mean = {key: float(np.mean([dr[key] for dr in draws])) for key in draws[0]}
      family = "favor_orthogonal" if orthogonal else "favor_iid"
      rows.append({"method": f"{family} m={m}", "family": family, "feature_dim": m, **mean})
  row = errors(q, k, v, causal, "linear", feature_map="elu")
  rows.append({"method": "linear elu+1 (not an exp estimate)", "family": "linear", "feature_dim": d, **row})
  return rows


def rank_table(config, q, k, rng) -> list[dict]:
  """Numerical rank of bidirectional attention matrices, first batch row and head.

  (Causal attention matrices are lower triangular with a positive diagonal, hence always
  full rank: the cap on rank only shows without the mask.)
  """
  q, k = q[:1, :, :1], k[:1, :, :1]
  n, d = q.shape[1], q.shape[-1]
  m = config.rank_favor_dim
  projection = A.favor_projection(rng, m, d, True)
  cases = [("softmax", {}, math.inf), ("linear", {"feature_map": "elu"}, d),
           ("favor", {"projection": projection}, m)]
  cases += [("taylor", {"order": p}, A.feature_dim("taylor", d, order=p)) for p in config.orders[:2]]
  cases += [("limit", {"order": p}, A.feature_dim("limit", d, order=p)) for p in config.orders[:2]]
  rows = []
  for kind, params, dim in cases:
    matrix = A.attention_matrix(q, k, kind=kind, **params)[0, 0]
    label = kind + "".join(f" {key}={val}" for key, val in params.items() if key != "projection")
    if kind == "favor":
      label += f" m={m}"
    rows.append({"attention": label, "feature_dim": None if dim == math.inf else dim, "n": n,
                 "rank_bound": n if dim == math.inf else min(n, dim),
                 "numerical_rank": A.numerical_rank(matrix, config.rank_rtol)})
  return rows


def trained_qk(config, workdir, writer):
  """Trains the softmax char-LM briefly; returns (q, k of every layer on held-out text, TrainResult)."""
  text = lm.load_corpus(config)
  model, result = lm.train_lm(config, workdir, writer, text, "softmax", {}, config.context, "lm")
  windows = char_corpus.heldout_windows(text.heldout, config.context, config.data.heldout_windows)
  _, state = jax.jit(lambda p, w: model.apply({"params": p}, w[:, :-1], mutable=["intermediates"]))(
      result.params, windows)
  layers = state["intermediates"]["decoder"]
  qks = [layers[name]["self_attention"]["qk"][0] for name in sorted(layers) if name.startswith("layer_")]
  return qks, result


def measure(config, workdir, writer) -> dict:
  """Every table of the note: random q, k, v (errors and ranks), then each layer of the trained
  LM (causal errors, ranks, the spread of its scaled dot products)."""
  rng = jax.random.key(config.seed)
  r = config.random
  keys = jax.random.split(rng, 4)
  q, k, v = (jax.random.normal(key, (1, r.length, r.heads, r.head_dim)) for key in keys[:3])
  results = {"random": {"shape": dict(r), "errors": error_table(config, q, k, v, False, keys[3]),
                        "ranks": rank_table(config, q, k, keys[3])}}
  qks, trained = trained_qk(config, workdir, writer)
  results["trained"] = {"model": dict(config.model), "context": config.context, "lm_steps": trained.step,
                        "lm_heldout_bits_per_char": trained.eval_metrics.get("bits_per_char"), "layers": {}}
  for i, (tq, tk) in enumerate(qks):
    tv = jax.random.normal(jax.random.fold_in(keys[2], i), tq.shape)
    dots = jnp.einsum("bqhd,bkhd->bhqk", tq, tk) / math.sqrt(tq.shape[-1])
    results["trained"]["layers"][f"layer_{i}"] = {
        "scaled_dot_std": float(dots.std()), "scaled_dot_max": float(jnp.abs(dots).max()),
        "errors_causal": error_table(config, tq, tk, tv, True, jax.random.fold_in(keys[3], i)),
        "ranks": rank_table(config, tq, tk, keys[3])}
  for source, rows in error_sources(results):
    for row in rows:
      writer.write(int(row["feature_dim"]), f"{source}/{row['method']}", row)
  results["winner_at_equal_dimension"] = winners(results)
  return results


def error_sources(results) -> list[tuple[str, list[dict]]]:
  """[(source, error rows)]: 'random', then 'trained/layer_i' (causal)."""
  return [("random", results["random"]["errors"])] + [
      (f"trained/{name}", layer["errors_causal"]) for name, layer in results["trained"]["layers"].items()]


def winners(results) -> dict:
  """For each deterministic map's dimension, the family with the smallest output error near it."""
  out = {}
  for source, rows in error_sources(results):
    verdicts = []
    for row in rows:
      if row["family"] not in ("taylor", "limit"):
        continue
      dim = row["feature_dim"]
      favor = [x for x in rows if x["family"] == "favor_orthogonal"]
      nearest = min(favor, key=lambda x: abs(math.log(x["feature_dim"] / dim)))
      verdicts.append({"method": row["method"], "feature_dim": dim,
                       "output_rel_error": row["output_rel_error"],
                       "favor_orthogonal_m": nearest["feature_dim"],
                       "favor_output_rel_error": nearest["output_rel_error"],
                       "better": row["method"] if row["output_rel_error"] < nearest["output_rel_error"]
                                 else f"favor_orthogonal m={nearest['feature_dim']}"})
    out[source] = verdicts
  return out


def error_figure(results):
  """Output error vs feature dimension per family: random q, k and the last trained layer."""
  plt = metrics.pyplot()
  sources = [("random q, k", results["random"]["errors"])]
  layers = results["trained"]["layers"]
  if layers:
    name = sorted(layers)[-1]
    sources.append((f"trained LM q, k ({name}, causal)", layers[name]["errors_causal"]))
  fig, axes = plt.subplots(1, len(sources), figsize=(6 * len(sources), 4.2), squeeze=False)
  for ax, (title, rows) in zip(axes[0], sources):
    for family, style in (("favor_iid", "o--"), ("favor_orthogonal", "o-"), ("taylor", "s-"),
                          ("limit", "^-"), ("linear", "x")):
      pts = [(x["feature_dim"], x["output_rel_error"]) for x in rows if x["family"] == family]
      if pts:
        ax.loglog(*zip(*pts), style, label=family)
    ax.set_xlabel("feature dimension")
    ax.set_ylabel("relative error of the attention output")
    ax.set_title(title)
    ax.legend(fontsize=8)
  return fig
