"""Note 4: the JL lemma measured (configs/jl.py).

Five sections, each a results table and a figure: lemma tails, random projection of N real
vectors, SimHash, randomized SVD, and the head-size curve. Every number is computed here;
the bounds are the note's formulas, evaluated.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import data, metrics, timing, trainer
from lmsys.notes import jl
from lmsys.config import ConfigError, check_positive_int

SETS = ("gaussian", "fashion_mnist", "fewclue/tnews")


def validate(config) -> None:
  for name in set(config.data.sets) | {config.lsh.dataset, config.svd.dataset}:
    if name not in SETS:
      raise ConfigError(f"config key 'data.sets': unknown set {name!r} (known: {', '.join(SETS)})")
    if name != "gaussian":
      try:
        data.check_available(name, config.data.data_dir or None)
      except ConfigError as e:
        raise ConfigError(f"config key 'data.sets': {e}") from None
  for key in ("tails.samples", "projection.grid_points", "projection.block", "lsh.points",
              "lsh.pairs", "svd.points", "svd.rank", "head.max_size", "head.steps", "data.gaussian_dim"):
    check_positive_int(config, key)
  if any(not 0 < e < 1 for e in config.tails.eps):
    raise ConfigError(f"config key 'tails.eps': expected values in (0, 1), got {config.tails.eps!r}")
  for case in config.projection.cases:
    if len(case) != 3 or case[0] < 2 or not 0 < case[1] < 1 or case[2] < 1:
      raise ConfigError(f"config key 'projection.cases': expected (N >= 2, 0 < eps < 1, trials >= 1), got {case!r}")
  if not config.svd.sketch or min(config.svd.sketch) < config.svd.rank:
    raise ConfigError(f"config key 'svd.sketch': expected sketch sizes >= svd.rank ({config.svd.rank}), "
                      f"got {tuple(config.svd.sketch)!r}")
  name = config.optimizer.name
  if not isinstance(name, str) or name.startswith("_") or not callable(getattr(optax, name, None)):
    raise ConfigError(f"config key 'optimizer.name': unknown optax optimizer {name!r}")


# ---------------------------------------------------------------- data

def load_points(config, name: str, num: int, sources: dict) -> np.ndarray:
  """num distinct real vectors (rows) of set `name`, float32.

  `sources` (one dict per run, passed explicitly) keeps each set's full array
  once it is read, since several sections sample the same set.
  """
  rng = np.random.default_rng(config.seed)
  if name == "gaussian":
    return rng.normal(size=(num, config.data.gaussian_dim)).astype(np.float32)
  if name not in sources:
    if name == "fashion_mnist":
      x = data.load_arrays("fashion_mnist", config.data.data_dir or None)["train"]["x"]
    else:
      x = _text_vectors(config, name.split("/", 1)[1])
    sources[name] = np.unique(x, axis=0)  # exact duplicates have no distance ratio
  x = sources[name]
  if len(x) < num:
    raise ConfigError(f"{name}: only {len(x)} distinct vectors, {num} requested")
  return x[np.sort(rng.permutation(len(x))[:num])]


def _text_vectors(config, task: str) -> np.ndarray:
  """TF-IDF + SVD features of the task's unlabeled sentences (the labelled splits are too small)."""
  from lmsys.data import fewclue  # pylint: disable=g-import-not-at-top
  records = data.load_fewclue(task, "unlabeled", config.data.data_dir or None)
  sentences = [data.fewclue_text(task, r) for r in records]
  features, _ = fewclue.fewclue_features(sentences, [], (), use_unlabeled=False, seed=config.seed,
                                      **dict(config.data.text))
  return features[0]


# ---------------------------------------------------------------- sections

def run_tails(config, writer):
  key = jax.random.key(config.seed)
  rows = {}
  for n in config.tails.n:
    norm_mc, inner_mc = jl.monte_carlo_tails(jax.random.fold_in(key, n), n, config.tails.eps,
                                             config.tails.samples)
    for eps, p_norm, p_inner in zip(config.tails.eps, norm_mc, inner_mc):
      row = {"n": n, "eps": eps,
             "norm_mc": p_norm, "norm_exact": jl.norm_tail_exact(n, eps),
             "norm_bound": float(jl.norm_tail_bound(n, eps)),
             "inner_mc": p_inner, "inner_exact": jl.inner_tail_exact(n, eps),
             "inner_bound": float(jl.inner_tail_bound(n, eps))}
      # Excess over the bound in Monte-Carlo standard errors (positive = the bound is broken).
      for lemma in ("norm", "inner"):
        p = row[f"{lemma}_exact"]
        se = math.sqrt(max(p * (1 - p), 1.0 / config.tails.samples) / config.tails.samples)
        row[f"{lemma}_mc_excess_se"] = (row[f"{lemma}_mc"] - row[f"{lemma}_bound"]) / se
      rows[f"n={n},eps={eps}"] = row
      writer.write(n, f"tails/eps={eps}", row)
  return rows


def projection_grid(num: int, eps: float, points: int):
  top = int(math.ceil(jl.jl_dim_bound(num, eps, 24.0)))
  extra = [int(math.ceil(jl.jl_dim_bound(num, eps, 16.0))), jl.sklearn_min_dim(num, eps)]
  grid = np.unique(np.concatenate([np.linspace(0, top, points + 1)[1:].round().astype(int),
                                   [e for e in extra if e <= top]]))
  return grid[grid >= 1], top


def run_projection(config, writer, sources):
  rows, curves = {}, {}
  for set_index, name in enumerate(config.data.sets):
    for num, eps, trials in config.projection.cases:
      x = load_points(config, name, num, sources)
      grid, top = projection_grid(num, eps, config.projection.grid_points)
      key = jax.random.fold_in(jax.random.key(config.seed + 1), set_index * 1_000_003 + num * 7 + int(eps * 1000))
      gaussian = jax.random.normal(key, (trials, x.shape[1], top))
      with timing.Stopwatch() as watch:
        worst, used, skipped = jl.pairwise_distortion(x, gaussian, grid, block=config.projection.block)
      bound16 = int(math.ceil(jl.jl_dim_bound(num, eps, 16.0)))
      at = lambda n: worst[:, int(np.searchsorted(grid, n))]
      good = [jl.smallest_good_dim(grid, w, eps) for w in worst]
      found = [g for g in good if g is not None]
      row = {"dataset": name, "N": num, "eps": eps, "dim": x.shape[1], "trials": trials,
             "bound_24logN": top, "bound_16logN": bound16, "sklearn_min_dim": jl.sklearn_min_dim(num, eps),
             "success_at_24logN": float(np.mean(at(top) < eps)),
             "success_at_16logN": float(np.mean(at(bound16) < eps)),
             "worst_distortion_at_24logN": float(np.max(at(top))),
             "empirical_min_n_median": float(np.median(found)) if found else None,
             "empirical_min_n_max": max(found) if len(found) == trials else None,
             "grid_step": float(top / config.projection.grid_points),
             "pairs": used, "pairs_skipped_too_close": skipped, "seconds": watch.seconds}
      rows[f"{name},N={num},eps={eps}"] = row
      curves[(name, num, eps)] = (grid, worst)
      writer.write(num, f"projection/{name}/eps={eps}", {k: v for k, v in row.items() if k != "dataset"})
  return rows, curves


def run_lsh(config, writer, sources):
  x = load_points(config, config.lsh.dataset, config.lsh.points, sources)
  x = x - x.mean(0)  # centred: cosines spread over (-1, 1) instead of all near 1 for images
  rng = np.random.default_rng(config.seed + 2)
  pairs = rng.integers(0, len(x), size=(config.lsh.pairs, 2))
  pairs = pairs[pairs[:, 0] != pairs[:, 1]]
  rows = jl.simhash_cosine_errors(jax.random.key(config.seed + 2), x, pairs, config.lsh.bits)
  for row in rows:
    writer.write(row["bits"], "lsh", row)
  return {f"bits={r['bits']}": r for r in rows}


def run_svd(config, writer, sources):
  x = load_points(config, config.svd.dataset, config.svd.points, sources)
  x = jnp.asarray(x - x.mean(0))
  rank = config.svd.rank
  with timing.Stopwatch() as exact_watch:
    singular = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  best = float(np.sqrt(np.sum(singular[rank:] ** 2)))
  rows = {}
  for q in config.svd.power_iters:
    for sketch in config.svd.sketch:
      with timing.Stopwatch() as watch:
        u, s, vt = jl.randomized_svd(jax.random.key(config.seed + 3), x, rank, sketch, q)
        error = jl.low_rank_error(x, u, s, vt)
      row = {"power_iters": q, "sketch": sketch, "rank": rank, "error_over_best": error / best,
             "top_singular_value_rel_error": float(abs(s[0] - singular[0]) / singular[0]),
             "seconds": watch.seconds, "exact_svd_seconds_float64": exact_watch.seconds}
      rows[f"q={q},sketch={sketch}"] = row
      writer.write(sketch, f"svd/power_iters={q}", row)
  return rows


def run_head_size(config, writer):
  head = config.head
  optimizer = trainer.make_optimizer(config.optimizer, head.steps)
  rows, lower = {}, 1
  for length in head.lengths:
    targets = jax.random.randint(jax.random.fold_in(jax.random.key(config.seed + 4), length),
                                 (length,), 0, length)
    tau = head.inverse_temperature_per_log_length * math.log(length)
    results = {}

    def fit(d, targets=targets, tau=tau, results=results):
      out = jl.fit_attention_pattern(jax.random.key(config.seed + 5), targets, d, tau, optimizer, head.steps)
      results[d] = {k: float(v) for k, v in out.items()}
      return results[d]["target_weight"] >= head.success_weight

    with timing.Stopwatch() as watch:
      d_min, _ = jl.smallest_head_size(fit, lower, head.max_size)
    # Longer sequences need about as many dimensions or more: start the next search just below.
    lower = max(1, d_min - 2) if d_min else lower
    row = {"L": length, "tau": tau, "d_min": d_min, "note_8.33_logL": 8.33 * math.log(length),
           "d_min_over_logL": d_min / math.log(length) if d_min else None,
           "target_weight_at_d_min": results[d_min]["target_weight"] if d_min else None,
           "top1_at_d_min": results[d_min]["top1"] if d_min else None,
           "target_weight_at_d_min_minus_1": results.get((d_min or 0) - 1, {}).get("target_weight"),
           "fits": len(results), "seconds": watch.seconds}
    rows[f"L={length}"] = row
    writer.write(length, "head_size", row)
  return rows


# ---------------------------------------------------------------- figures

def tails_figure(rows):
  plt = metrics.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  eps_values = sorted({r["eps"] for r in rows.values()})
  for ax, lemma, title in ((axes[0], "norm", "P(| |u|^2 - 1 | >= eps)"), (axes[1], "inner", "P(|<u,v>| >= eps)")):
    for i, eps in enumerate(eps_values):
      sel = [r for r in rows.values() if r["eps"] == eps]
      n = [r["n"] for r in sel]
      color = f"C{i}"
      ax.plot(n, [r[f"{lemma}_bound"] for r in sel], "--", color=color, label=f"bound eps={eps}")
      ax.plot(n, [r[f"{lemma}_exact"] for r in sel], "-", color=color, label=f"exact eps={eps}")
      ax.plot(n, [max(r[f"{lemma}_mc"], 1e-12) for r in sel], "o", color=color, label=f"Monte-Carlo eps={eps}")
    ax.set(xscale="log", yscale="log", xlabel="n", title=title, ylim=(1e-8, 5))
  axes[0].legend(fontsize=7)
  return fig


def projection_figure(curves):
  plt = metrics.pyplot()
  cases = sorted({(num, eps) for _, num, eps in curves})
  names = sorted({name for name, _, _ in curves})
  fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
  for ax, (num, eps) in zip(axes[0], cases):
    for (name, n2, e2), (grid, worst) in sorted(curves.items()):
      if (n2, e2) == (num, eps):
        ax.plot(grid, np.median(worst, 0), color=f"C{names.index(name)}", label=f"{name} (median of trials)")
    ax.axhline(eps, color="k", lw=0.8)
    for const, style in ((16.0, ":"), (24.0, "--")):
      ax.axvline(jl.jl_dim_bound(num, eps, const), color="gray", ls=style, label=f"{const:g} log N / eps^2")
    ax.axvline(jl.sklearn_min_dim(num, eps), color="r", ls="-.", lw=0.8, label="sklearn")
    ax.set(yscale="log", xlabel="projected dim n", title=f"N={num}, eps={eps}", ylabel="max pair distortion")
  axes[0][0].legend(fontsize=7)
  return fig


def lsh_svd_figure(lsh_rows, svd_rows):
  plt = metrics.pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  bits = [r["bits"] for r in lsh_rows.values()]
  a.plot(bits, [r["angle_rmse"] for r in lsh_rows.values()], "o-", label="angle RMSE")
  a.plot(bits, [r["angle_rmse_theory"] for r in lsh_rows.values()], "--", label="theory sqrt(t(pi-t)/k)")
  a.plot(bits, [r["cosine_rmse"] for r in lsh_rows.values()], "s-", label="cosine RMSE")
  a.set(xscale="log", yscale="log", xlabel="bits k", title="SimHash")
  a.legend(fontsize=8)
  for q in sorted({r["power_iters"] for r in svd_rows.values()}):
    sel = [r for r in svd_rows.values() if r["power_iters"] == q]
    b.plot([r["sketch"] for r in sel], [r["error_over_best"] - 1 for r in sel], "o-", label=f"power iters {q}")
  b.set(yscale="log", xlabel="sketch size", ylabel="error / best rank-k error - 1", title="randomized SVD")
  b.legend(fontsize=8)
  return fig


def head_figure(rows):
  plt = metrics.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.6))
  lengths = np.array([r["L"] for r in rows.values()])
  ax.plot(lengths, [r["d_min"] or np.nan for r in rows.values()], "o-", label="smallest d fitting (measured)")
  ax.plot(lengths, 8.33 * np.log(lengths), "--", label="8.33 log L (note)")
  ax.set(xscale="log", xlabel="sequence length L", ylabel="head size d")
  ax.legend(fontsize=8)
  return fig


def run(config, workdir, writer) -> dict:
  timings, sources = {}, {}
  with timing.Stopwatch() as watch:
    tails = run_tails(config, writer)
  timings["tails_s"] = watch.seconds
  metrics.save_figure(tails_figure(tails), workdir, "tails")

  with timing.Stopwatch() as watch:
    projection, curves = run_projection(config, writer, sources)
  timings["projection_s"] = watch.seconds
  metrics.save_figure(projection_figure(curves), workdir, "projection")

  with timing.Stopwatch() as watch:
    lsh = run_lsh(config, writer, sources)
    svd = run_svd(config, writer, sources)
  timings["lsh_svd_s"] = watch.seconds
  metrics.save_figure(lsh_svd_figure(lsh, svd), workdir, "lsh_svd")

  with timing.Stopwatch() as watch:
    head = run_head_size(config, writer)
  timings["head_size_s"] = watch.seconds
  metrics.save_figure(head_figure(head), workdir, "head_size")
  return {"tails": tails, "projection": projection, "lsh": lsh, "randomized_svd": svd,
          "head_size": head, "timings": timings}
