"""Note 6 (kexue 8791): VAE vs IWAE training, and their test log-likelihood by importance sampling.

For every (stochastic layers, training k) of the config: train with the shared trainer on
dynamically binarised images (loss -IWAE_k; k=1 is the VAE), then on a fixed binarisation of
test images estimate log p(x) with eval.num_samples importance samples, and in the same pass
the bounds IWAE_k for k in eval.bound_ks (lmsys.tasks.density). The models are
lmsys.models.vae.

  python -m experiments.run --config configs/vae.py --workdir runs/vae
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import analysis, claims, data, metrics, timing, trainer
from lmsys.config import ConfigError
from lmsys.models import vae as vae_model
from lmsys.tasks import density

# IWAE paper (Burda et al. 2015, table 1), MNIST test NLL in nats, k=5000 estimate.
PAPER_MNIST_NLL = {"L1_k1": 86.76, "L1_k5": 85.54, "L1_k50": 84.78,
                   "L2_k1": 85.33, "L2_k5": 83.89, "L2_k50": 82.90}


def run_names(config) -> list[tuple[str, int, int]]:
  """(name, stochastic layers, training k) of every model of the config: `L<layers>_k<k>`."""
  return [(f"L{layers}_k{k}", layers, k)
          for layers in config.model.num_layers for k in config.model.train_ks]


def load_data(config):
  """(train_x in [0, 1], test images binarised once with a fixed seed), both float32 [N, D]."""
  dataset = data.load_arrays(config.data.name, data_dir=config.data.data_dir or None)
  pixel_scale = float(config.data.pixel_scale)
  train_x = dataset["train"]["x"].reshape(len(dataset["train"]["x"]), -1) / pixel_scale
  test_x = dataset["test"]["x"].reshape(len(dataset["test"]["x"]), -1) / pixel_scale
  for split, x in (("train", train_x), ("test", test_x)):
    if x.min() < 0 or x.max() > 1:
      raise ConfigError(f"config key 'data.pixel_scale': {split} pixels / {pixel_scale} span "
                        f"[{x.min():g}, {x.max():g}], not [0, 1]")
  seed = int(config.data.binarize_seed)
  test_x = data.subsample({"x": test_x}, int(config.eval.test_size), seed)["x"]
  # The test set is binarised once (fixed seed) so every model sees the same images.
  test_bin = (np.random.default_rng(seed).random(test_x.shape) < test_x).astype(np.float32)
  return train_x.astype(np.float32), test_bin


def make_loss_fn(model, k: int):
  """The trainer's loss: -IWAE_k on a fresh binarisation of the batch every step (k=1: the VAE)."""
  def loss_fn(params, batch, rng):
    binarize_rng, sample_rng = jax.random.split(rng)
    x = vae_model.dynamic_binarize(binarize_rng, batch["x"])  # a fresh binarisation every step
    log_w = model.apply({"params": params}, x, sample_rng, k)  # [k, B]
    return density.iwae_loss(log_w), {"elbo": log_w.mean(), f"iwae_{k}": -density.iwae_loss(log_w)}
  return loss_fn


def make_apply(model):
  """(params, x, rng, num_samples) -> log weights [num_samples, B], for the estimator."""
  return lambda params, x, rng, num_samples: model.apply({"params": params}, x, rng, num_samples)


def train_and_evaluate(config, workdir, writer, name, layers, k, train_x, test_x):
  """Trains one model; returns (results, model, params, per-image estimates of the test images)."""
  model = vae_model.make_model(layers, input_size=train_x.shape[1])
  apply = make_apply(model)
  ev = config.eval
  monitor_x = test_x[:ev.during_train_images]

  # Cheap progress check during training: ELBO and IWAE_k on a few test images.
  monitor_samples = max(ev.during_train_samples, k)
  monitor = density.make_estimator(apply, monitor_samples, monitor_samples, sorted({1, k}))
  eval_fn = lambda params: density.summarize(
      density.evaluate_dataset(monitor, params, monitor_x, jax.random.key(1), ev.batch_size))

  with timing.Stopwatch() as train_watch:
    result = trainer.train(
        config, workdir, writer,
        init_fn=lambda rng: model.init(rng, jnp.zeros((1, train_x.shape[1])), rng)["params"],
        loss_fn=make_loss_fn(model, k),
        batch_fn=data.make_batch_fn({"x": train_x}, config.train.batch_size, config.seed),
        eval_fn=eval_fn, name=name)
  train_seconds = train_watch.seconds

  with timing.Stopwatch() as eval_watch:
    estimator = density.make_estimator(apply, ev.num_samples, ev.chunk_size, ev.bound_ks)
    per_image = density.evaluate_dataset(estimator, result.params, test_x,
                                      jax.random.key(config.seed + 7), ev.batch_size)
  eval_seconds = eval_watch.seconds
  summary = density.summarize(per_image)
  writer.write(result.step, f"{name}/test", summary)
  out = {
      **summary,
      "gap_elbo_to_log_px": summary["log_px"] - summary["iwae_1"],
      "nll": -summary["log_px"],
      "min_ess": float(per_image["ess"].min()),
      "steps": result.step,
      "steps_per_second": result.steps_per_second,
      "train_seconds": train_seconds,
      "eval_seconds": eval_seconds,
      "eval_images_per_second": len(test_x) / eval_seconds,
      "paper_mnist_nll": PAPER_MNIST_NLL.get(name),
  }
  return out, model, result.params, per_image


def gap_figure(results, bound_ks, num_samples):
  """log p(x) minus each bound IWAE_k, per model, with Monte-Carlo standard errors."""
  plt = metrics.pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for name, r in results.items():
    gaps = [r["log_px"] - r[f"iwae_{k}"] for k in bound_ks]
    errs = [r[f"iwae_{k}_se"] for k in bound_ks]
    ax.errorbar(bound_ks, gaps, yerr=errs, marker="o", capsize=3, label=name)
  ax.set_xscale("log")
  ax.set_yscale("symlog", linthresh=0.1)
  ax.set_xlabel("k (importance samples in the bound)")
  ax.set_ylabel(f"log p(x) [k={num_samples}] - IWAE_k  (nats)")
  ax.set_title("Gap between the bounds and the log p(x) estimate")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  return fig


def curves_figure(workdir, names):
  """The test ELBO on the monitor images during training, per model."""
  plt = metrics.pyplot()
  rows = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for name in names:
    evals = rows[rows["split"] == f"{name}/eval"] if len(rows) else rows
    if len(evals):
      ax.plot(evals["step"], evals["iwae_1"], marker=".", label=name)
  ax.set_xlabel("training step")
  ax.set_ylabel("test ELBO on the monitor images (nats)")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  return fig


def samples_figure(models, side):
  """16 decoded samples of each model, as a 4x4 image grid."""
  plt = metrics.pyplot()
  fig, axes = plt.subplots(1, len(models), figsize=(2.2 * len(models), 2.4))
  axes = np.atleast_1d(axes)
  for ax, (name, (model, params)) in zip(axes, models.items()):
    z = jax.random.normal(jax.random.key(0), (16, model.latent_sizes[-1]))
    probs = np.asarray(model.apply({"params": params}, z, method=vae_model.VAE.decode_mean))
    tiles = probs.reshape(4, 4, side, side).transpose(0, 2, 1, 3).reshape(4 * side, 4 * side)
    ax.imshow(tiles, cmap="gray", vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.axis("off")
  return fig


def markdown_table(results: dict) -> str:
  """The results table of docs/results/vae.md: bounds and estimates as NLL (nats, lower is better)."""
  ks = sorted(int(key.split("_")[1]) for key in next(iter(results["models"].values()))
              if key.startswith("iwae_") and not key.endswith("_se"))
  n = results["num_samples"]
  head = (["model", "-ELBO"] + [f"-IWAE_{k}" for k in ks if k > 1]
          + [f"NLL (k={n:,}) ± MC se", "ELBO gap", "min ESS", "train s", "eval img/s",
             "IWAE paper, MNIST (other dataset)"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, r in results["models"].items():
    paper = r.get("paper_mnist_nll")
    cells = ([name, f"{-r['iwae_1']:.2f}"] + [f"{-r[f'iwae_{k}']:.2f}" for k in ks if k > 1]
             + [f"{r['nll']:.2f} ± {r['log_px_se']:.3f}", f"{r['gap_elbo_to_log_px']:.2f}",
                f"{r['min_ess']:.1f}", f"{r['train_seconds']:.0f}", f"{r['eval_images_per_second']:.1f}",
                "—" if paper is None else f"{paper:.2f}"])
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def paired_intervals(per_image: dict[str, dict], keys=("log_px", "iwae_1")) -> dict:
  """For every two models with the same number of stochastic layers, the paired bootstrap
  interval over test images of the difference of each key (e.g. "L1_k50-L1_k1": {"log_px":
  [lo, hi]}): the models were evaluated on the same images."""
  out = {}
  names = list(per_image)
  for a in names:
    for b in names:
      if a != b and a.split("_")[0] == b.split("_")[0] and names.index(a) > names.index(b):
        out[f"{a}-{b}"] = {key: claims.paired_bootstrap(per_image[a][key], per_image[b][key]) for key in keys}
  return out
