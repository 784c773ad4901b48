"""MLP classifier trained by the shared trainer (configs/mlp.py)."""

from __future__ import annotations

import os

from lmsys import analysis, metrics, trainer
from lmsys.nn import activations
from lmsys.config import ConfigError
from lmsys.tasks import classification


def validate(config) -> None:
  trainer.validate_config(config)
  if config.model.activation not in activations.ACTIVATIONS:
    raise ConfigError(f"config key 'model.activation': unknown activation {config.model.activation!r} "
                      f"(known: {', '.join(activations.ACTIVATIONS)})")
  if not all(isinstance(w, int) and w > 0 for w in config.model.hidden):
    raise ConfigError(f"config key 'model.hidden': expected positive integers, got {config.model.hidden!r}")
  classification.check_data(config, config.data.name)


def run(config, workdir, writer) -> dict:
  results = {config.data.name: classification.train_mlp(config, workdir, writer)}
  writer.flush()
  curves = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  title = f"MLP{tuple(config.model.hidden)} {config.model.activation} on {config.data.name}"
  metrics.save_figure(analysis.plot_curves(curves, title=title), workdir, "curves")
  return results
