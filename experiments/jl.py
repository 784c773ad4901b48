"""Note 4: the JL lemma measured (configs/jl.py).

Five sections of `lmsys.notes.jl`, each a results table and a figure: lemma tails, random
projection of N real vectors, SimHash, randomized SVD, and the head-size curve. Intervals:
binomial (Clopper-Pearson) over Monte-Carlo samples and over projection trials.
"""

from __future__ import annotations

import math
import os

from lmsys import checks, data, metrics, timing
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.notes import jl

CHECKS = [*[(checks.positive_int, k) for k in ("tails.samples", "projection.grid_points", "projection.block",
                                               "lsh.points", "lsh.pairs", "svd.points", "svd.rank", "head.max_size",
                                               "head.steps", "data.gaussian_dim")],
          (checks.fractions, "tails.eps"), (checks.at_least, "svd.sketch", "svd.rank"), (checks.optimizer_name,)]


def _sets(config) -> list[str]:
  return list(dict.fromkeys([*config.data.sets, config.lsh.dataset, config.svd.dataset]))


def validate(config) -> None:
  for name in _sets(config):
    if name not in jl.SETS:
      raise ConfigError(f"config key 'data.sets': unknown set {name!r} (known: {', '.join(jl.SETS)})")
    if name != "gaussian":
      checks.data_files(config, "data.sets", lambda: data.check_available(name, config.data.data_dir or None))
  checks.apply(config, CHECKS)
  for case in config.projection.cases:
    if len(case) != 3 or case[0] < 2 or not 0 < case[1] < 1 or case[2] < 1:
      raise ConfigError(f"config key 'projection.cases': expected (N >= 2, 0 < eps < 1, trials >= 1), got {case!r}")
  if not config.svd.sketch or min(config.svd.sketch) < config.svd.rank:
    raise ConfigError(f"config key 'svd.sketch': expected sketch sizes >= svd.rank ({config.svd.rank}), "
                      f"got {tuple(config.svd.sketch)!r}")


def inputs(config) -> list[str]:
  """Fashion-MNIST's files and the unlabeled sentences of a FewCLUE task (the sets read)."""
  data_dir = config.data.data_dir or None
  return [path for name in _sets(config) if name != "gaussian" for path in (
      data.sources.input_files(name, data_dir) if name == "fashion_mnist"
      else [os.path.join(data.fewclue_dir(name.split("/", 1)[1], data_dir), "unlabeled.json")])]


def run(config, workdir, writer) -> dict:
  timings, sources, out = {}, {}, {}
  sections = [("tails", lambda: jl.run_tails(config, writer)),
              ("projection", lambda: jl.run_projection(config, writer, sources)),
              ("lsh_svd", lambda: (jl.run_lsh(config, writer, sources), jl.run_svd(config, writer, sources))),
              ("head_size", lambda: jl.run_head_size(config, writer))]
  for name, section in sections:
    with timing.Stopwatch() as watch:
      out[name] = section()
    timings[f"{name}_s"] = watch.seconds
  (projection, curves), (lsh, svd) = out["projection"], out["lsh_svd"]
  for figure, name in ((jl.tails_figure(out["tails"]), "tails"), (jl.projection_figure(curves), "projection"),
                       (jl.lsh_svd_figure(lsh, svd), "lsh_svd"), (jl.head_figure(out["head_size"]), "head_size")):
    metrics.save_figure(figure, workdir, name)
  return {"tails": out["tails"], "projection": projection, "lsh": lsh, "randomized_svd": svd,
          "head_size": out["head_size"], "timings": timings}


def claims(results, config) -> list[dict]:
  samples, out = config.tails.samples, []
  for key, row in results["tails"].items():
    for lemma, factor in (("norm", 2), ("inner", 4)):
      out.append(C.claim(f"{lemma}_tail_bound", "4", f"P(|{'|u|^2 - 1' if lemma == 'norm' else '<u,v>'}| >= eps) "
                         f"<= {factor} exp(-eps^2 n / 8)", dataset=key, metric="Monte-Carlo tail probability",
                         value=row[f"{lemma}_mc"], interval=C.binomial_interval(round(row[f"{lemma}_mc"] * samples),
                                                                                samples),
                         kind="at_most", target=row[f"{lemma}_bound"],
                         detail=f"exact {row[f'{lemma}_exact']:.3g}, bound {row[f'{lemma}_bound']:.3g}"))
  for key, row in results["projection"].items():
    n, trials = row["N"], row["trials"]
    for const, kind, target, text in (
        (24, "at_least", (n - 1) / n, "With n > 24 log N / eps^2 all pairwise distances stay within 1 +- eps "
                                      "with probability >= (N-1)/N"),
        (16, "higher", 0.0, "n > 16 log N / eps^2 dimensions suffice for some projection to keep every pair")):
      rate = row[f"success_at_{const}logN"]
      out.append(C.claim(f"projection_{const}", "4", text, dataset=key, metric="fraction of trials keeping every pair",
                         value=rate, interval=C.binomial_interval(round(rate * trials), trials), kind=kind,
                         target=target, detail=f"{trials} trials at n = {row[f'bound_{const}logN']}; smallest "
                         f"good n, median {row['empirical_min_n_median']}"))
  for key, row in results["lsh"].items():
    out.append(C.claim("simhash_theory", "4", "SimHash's angle error follows sqrt(theta (pi - theta) / k)",
                       dataset=key, metric="angle RMSE over the theory's", kind="close", target=1.0, margin=0.25,
                       value=row["angle_rmse"] / row["angle_rmse_theory"]))
  for key, row in results["head_size"].items():
    ratio = row["d_min_over_logL"]
    out.append(C.claim("head_size", "4", "An attention head needs d > 8.33 log L", dataset=key, kind="at_least",
                       metric="smallest fitting d / log L", value=ratio, target=8.33,
                       detail=f"d_min {row['d_min']} vs 8.33 log L = {8.33 * math.log(row['L']):.1f}"
                       if row["d_min"] else f"no head up to {config.head.max_size} fits"))
  return C.with_summaries(out)
