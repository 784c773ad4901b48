"""Classification with the shared trainer: loss, batched evaluation, train a classifier.

Used by the MLP demo (configs/mlp.py), note 1's maximum-likelihood baseline
(a classifier with no hidden layer) and note 8's activation comparison.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import data, trainer
from lmsys.config import ConfigError
from lmsys.models.mlp import MLP


def data_options(config, name: str) -> dict:
  """Loader options from config keys: FewCLUE's split files (data.train_split / data.test_split)."""
  if not name.startswith("fewclue/"):
    return {}
  return {"train_split": config.data.get("train_split", ""), "test_split": config.data.get("test_split", "")}


def check_data(config, name: str) -> None:
  """validate()'s cheap check that dataset `name` and its files exist (loads nothing)."""
  try:
    data.check_available(name, config.data.get("data_dir") or None, **data_options(config, name))
  except ConfigError as e:
    raise ConfigError(f"config key 'data.name' = {name!r}: {e}") from None


def load_standardized(config, name: str, **feature_options):
  """(dataset, train_x, test_x): the dataset and its features standardised on train."""
  dataset = data.load_arrays(name, data_dir=config.data.get("data_dir") or None, seed=config.seed,
                             **data_options(config, name), **feature_options)
  train_x, test_x = data.standardize(dataset["train"]["x"], dataset["test"]["x"])
  return dataset, train_x, test_x


def make_loss_fn(model):
  """(params, batch, rng) -> (mean cross-entropy, {"accuracy"}): the trainer's loss_fn."""
  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply({"params": params}, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"accuracy": (logits.argmax(-1) == batch["y"]).mean()}
  return loss_fn


def make_eval_fn(model, x, y, batch_size: int = 4096):
  """params -> {"loss", "accuracy"} over all of (x, y), one compilation (padded last batch)."""
  @jax.jit
  def per_example(params, batch):
    logits = model.apply({"params": params}, batch["x"])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return {"nll": nll, "correct": logits.argmax(-1) == batch["y"]}

  def eval_fn(params):
    out = data.map_batches(lambda batch, _: per_example(params, batch), {"x": x, "y": y},
                           min(batch_size, len(y)))
    return {"loss": float(np.mean(out["nll"], dtype=np.float64)),
            "accuracy": float(np.mean(out["correct"], dtype=np.float64))}
  return eval_fn


def train_classifier(config, workdir, writer, *, model, train_x, train_y, test_x=None, test_y=None,
                     name: str = ""):
  """Trains `model` on (train_x, train_y) with the shared trainer; returns (TrainResult, metrics).

  metrics: train/test loss and accuracy of the final parameters, steps, steps/s.
  """
  arrays = {"x": train_x, "y": train_y}
  eval_fn = make_eval_fn(model, test_x, test_y) if test_x is not None else None
  result = trainer.train(
      config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, train_x.shape[1])))["params"],
      loss_fn=make_loss_fn(model),
      batch_fn=data.make_batch_fn(arrays, config.train.batch_size, config.seed),
      eval_fn=eval_fn, name=name)
  train_eval = make_eval_fn(model, train_x, train_y)(result.params)
  out = {"train_accuracy": train_eval["accuracy"], "train_loss": train_eval["loss"],
         "test_accuracy": result.eval_metrics.get("accuracy"), "test_loss": result.eval_metrics.get("loss"),
         "steps": result.step, "steps_per_second": result.steps_per_second}
  return result, out


def train_mlp(config, workdir, writer, name: str = "") -> dict:
  """The configured MLP (model.hidden, model.activation) on data.name: final metrics."""
  dataset, train_x, test_x = load_standardized(config, config.data.name)
  model = MLP(hidden=tuple(config.model.hidden), num_classes=dataset.num_classes,
              activation=config.model.activation)
  _, out = train_classifier(config, workdir, writer, model=model, train_x=train_x,
                            train_y=dataset["train"]["y"], test_x=test_x, test_y=dataset["test"]["y"],
                            name=name)
  return out
