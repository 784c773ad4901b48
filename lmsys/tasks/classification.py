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
  source = config.data.get("input", "memory")
  if source not in ("memory", "grain"):
    raise ConfigError(f"config key 'data.input': unknown input path {source!r} (known: memory, grain)")
  if source == "grain" and not name.startswith("tfds/"):
    raise ConfigError(f"config key 'data.input' = 'grain' streams a prepared TFDS dataset "
                      f"(data.name = 'tfds/<name>'), got data.name = {name!r}")
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
  if config.data.get("input", "memory") == "grain":
    return train_mlp_streamed(config, workdir, writer, name)
  dataset, train_x, test_x = load_standardized(config, config.data.name)
  model = MLP(hidden=tuple(config.model.hidden), num_classes=dataset.num_classes,
              activation=config.model.activation)
  _, out = train_classifier(config, workdir, writer, model=model, train_x=train_x,
                            train_y=dataset["train"]["y"], test_x=test_x, test_y=dataset["test"]["y"],
                            name=name)
  return out


def train_mlp_streamed(config, workdir, writer, name: str = "") -> dict:
  """train_mlp with the training split streamed from ArrayRecord files through grain
  (data.input = "grain"): the same batches as in memory, standardised with moments
  computed in chunks (one pass over the training split, in every process). The held-out
  split is read into memory; the training split is never, so the final train-set
  metrics are not computed (None)."""
  from lmsys.data import grain_source  # pylint: disable=g-import-not-at-top
  sources, num_classes = data.open_tfds(config.data.name[len("tfds/"):], config.data.get("data_dir") or None)
  for split in ("train", "test"):
    if split not in sources:
      raise ConfigError(f"config key 'data.name' = {config.data.name!r}: no split {split!r} "
                        f"(has: {', '.join(sources)})")
  train = sources["train"]
  mean, std = grain_source.feature_moments(train, data.tfds_arrays)
  std = np.where(std < 1e-6, 1.0, std).astype(np.float32)  # as data.standardize

  def decode(records):
    arrays = data.tfds_arrays(records)
    return {"x": (arrays["x"] - mean) / std, "y": arrays["y"]}

  test = decode(sources["test"].__getitems__(range(len(sources["test"]))))
  model = MLP(hidden=tuple(config.model.hidden), num_classes=int(num_classes), activation=config.model.activation)
  result = trainer.train(
      config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, test["x"].shape[1])))["params"],
      loss_fn=make_loss_fn(model),
      batch_fn=grain_source.make_batch_fn(train, config.train.batch_size, config.seed, decode),
      eval_fn=make_eval_fn(model, test["x"], test["y"]), name=name)
  return {"train_accuracy": None, "train_loss": None,
          "test_accuracy": result.eval_metrics.get("accuracy"), "test_loss": result.eval_metrics.get("loss"),
          "steps": result.step, "steps_per_second": result.steps_per_second}
