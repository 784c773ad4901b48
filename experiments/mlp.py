"""MLP classifier trained by the shared trainer (configs/mlp.py)."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import optax

from lmsys import activations, analysis, data, metrics, trainer
from lmsys.config import ConfigError
from lmsys.models.mlp import MLP


@functools.lru_cache(maxsize=4)
def _load(name: str, directory: str | None, seed: int):
  dataset = data.load_arrays(name, data_dir=directory, seed=seed)
  train_x, test_x = data.standardize(dataset["train"]["x"], dataset["test"]["x"])
  return dataset, train_x, test_x


def _dataset(config):
  # Only an explicit data.data_dir is passed: each loader has its own default
  # (Fashion-MNIST's Debian path, $LMSYS_DATA_DIR for FewCLUE).
  return _load(config.data.name, config.data.data_dir or None, config.seed)


def validate(config) -> None:
  trainer.validate_config(config)
  if config.model.activation not in activations.ACTIVATIONS:
    raise ConfigError(f"config key 'model.activation': unknown activation {config.model.activation!r} "
                      f"(known: {', '.join(activations.ACTIVATIONS)})")
  if not all(isinstance(w, int) and w > 0 for w in config.model.hidden):
    raise ConfigError(f"config key 'model.hidden': expected positive integers, got {config.model.hidden!r}")
  try:
    _dataset(config)  # unknown name / missing files fail here, before compute
  except ConfigError as e:
    raise ConfigError(f"config key 'data.name' = {config.data.name!r}: {e}") from None


def make_loss_fn(model):
  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply({"params": params}, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"accuracy": (logits.argmax(-1) == batch["y"]).mean()}
  return loss_fn


def make_eval_fn(model, x, y, batch_size=4096):
  @jax.jit
  def sums(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, yb).sum()
    return nll, (logits.argmax(-1) == yb).sum()

  def eval_fn(params):
    nll = correct = 0.0
    for i in range(0, len(x), batch_size):
      a, b = sums(params, x[i:i + batch_size], y[i:i + batch_size])
      nll, correct = nll + float(a), correct + float(b)
    return {"loss": nll / len(x), "accuracy": correct / len(x)}
  return eval_fn


def train_classifier(config, workdir, writer, name: str = "") -> dict:
  """Trains the configured MLP; returns final train/test metrics and throughput."""
  dataset, train_x, test_x = _dataset(config)
  model = MLP(hidden=tuple(config.model.hidden), num_classes=dataset.num_classes,
              activation=config.model.activation)
  arrays = {"x": train_x, "y": dataset["train"]["y"]}
  result = trainer.train(
      config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, train_x.shape[1])))["params"],
      loss_fn=make_loss_fn(model),
      batch_fn=data.make_batch_fn(arrays, config.train.batch_size, config.seed),
      eval_fn=make_eval_fn(model, test_x, dataset["test"]["y"]),
      name=name)
  train_eval = make_eval_fn(model, train_x, dataset["train"]["y"])(result.params)
  return {
      "train_accuracy": train_eval["accuracy"], "train_loss": train_eval["loss"],
      "test_accuracy": result.eval_metrics.get("accuracy"), "test_loss": result.eval_metrics.get("loss"),
      "steps": result.step, "steps_per_second": result.steps_per_second,
  }


def run(config, workdir, writer) -> dict:
  results = {config.data.name: train_classifier(config, workdir, writer)}
  writer.flush()
  curves = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  title = f"MLP{tuple(config.model.hidden)} {config.model.activation} on {config.data.name}"
  metrics.save_figure(analysis.plot_curves(curves, title=title), workdir, "curves")
  return results
