"""Note 6: VAE vs IWAE training, and their test log-likelihood by importance sampling (configs/vae.py).

Training and evaluation are `lmsys.notes.vae` (the estimator: `lmsys.tasks.density`). All
models are evaluated on the same test images, so model differences get a paired bootstrap
interval over images (one training seed: seed-to-seed spread is not in it; the sweep of
configs/vae.py gives it).
"""

from __future__ import annotations

import os

import numpy as np

from lmsys import checks, data, metrics
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.models import vae as vae_model
from lmsys.notes import vae

CHECKS = [(checks.trained,), (checks.each_one_of, "model.num_layers", sorted(vae_model.ARCHITECTURES), "layers"),
          (checks.positive_ints, "model.train_ks"), (checks.divides, "eval.chunk_size", "eval.num_samples")]


def validate(config) -> None:
  checks.apply(config, CHECKS)
  bad = [k for k in config.eval.bound_ks if config.eval.chunk_size % k]
  if bad:
    raise ConfigError(f"config key 'eval.bound_ks': {bad} do not divide eval.chunk_size {config.eval.chunk_size}")
  checks.datasets(config, "data.name", lambda name: data.check_available(name, config.data.data_dir or None))


def inputs(config) -> list[str]:
  return data.sources.input_files(config.data.name, config.data.data_dir or None)


def run(config, workdir, writer) -> dict:
  train_x, test_x = vae.load_data(config)
  results, models, per_image = {}, {}, {}
  for name, layers, k in vae.run_names(config):
    results[name], model, params, per_image[name] = vae.train_and_evaluate(config, workdir, writer, name, layers, k,
                                                                             train_x, test_x)
    models[name] = (model, params)
  ev = config.eval
  metrics.save_figure(vae.gap_figure(results, list(ev.bound_ks), ev.num_samples), workdir, "bound_gap_vs_k")
  writer.flush()
  metrics.save_figure(vae.curves_figure(workdir, list(results)), workdir, "training_curves")
  side = int(round(np.sqrt(next(iter(models.values()))[0].input_size)))
  metrics.save_figure(vae.samples_figure(models, side), workdir, "samples")
  out = {"dataset": config.data.name, "test_images": int(len(test_x)), "num_samples": ev.num_samples,
         "models": results, "paired_intervals": vae.paired_intervals(per_image)}
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(vae.markdown_table(out))
  return out


def claims(results, config) -> list[dict]:
  models, out = results["models"], []
  for name, r in models.items():
    k_max = max(config.eval.bound_ks)
    se = float(np.hypot(r["log_px_se"], r["iwae_1_se"]))
    out.append(C.claim("elbo_below_log_px", "6", "The ELBO lies below the importance-sampling estimate of log p(x)",
                       dataset=name, metric="log p(x) - ELBO (nats)", value=r["gap_elbo_to_log_px"], kind="higher",
                       interval=[r["gap_elbo_to_log_px"] - 1.96 * se, r["gap_elbo_to_log_px"] + 1.96 * se],
                       detail=f"Monte-Carlo standard errors; {results['num_samples']:,} samples"))
    out.append(C.claim("bounds_grow_with_k", "6", "IWAE_k grows with k toward log p(x)", dataset=name, kind="higher",
                       metric=f"IWAE_{k_max} - IWAE_1 (nats)", value=r[f"iwae_{k_max}"] - r["iwae_1"],
                       detail=f"IWAE_{k_max} {r[f'iwae_{k_max}']:.3f}, log p(x) {r['log_px']:.3f}"))
  for pair, interval in results["paired_intervals"].items():
    a, b = pair.split("-")
    if not b.endswith("_k1"):
      continue  # each IWAE against the VAE of the same architecture
    for key, claim_id, text in (("log_px", "iwae_better_log_px", "IWAE training (k > 1) gives a better log p(x) "
                                 "than the VAE"), ("iwae_1", "iwae_worse_elbo", "IWAE training gives a worse ELBO")):
      value = models[a][key] - models[b][key]
      out.append(C.claim(claim_id, "6", text, dataset=pair, metric=f"{key} difference (nats, higher = {a} better)",
                         value=value, interval=interval[key], kind="higher" if key == "log_px" else "lower",
                         detail=f"{a} {models[a][key]:.3f} vs {b} {models[b][key]:.3f}; paired bootstrap over "
                         f"{results['test_images']} test images, one training seed"))
  return C.with_summaries(out)
