"""MLP classifier trained by the shared trainer (configs/mlp.py): the spine's demo, no note's claims."""

from __future__ import annotations

import os

from lmsys import analysis, checks, metrics
from lmsys.data import sources
from lmsys.nn import activations
from lmsys.tasks import classification

CHECKS = [(checks.trained,), (checks.one_of, "model.activation", activations.ACTIVATIONS, "activation"),
          (checks.positive_ints, "model.hidden", 1, True)]


def validate(config) -> None:
  checks.apply(config, CHECKS)
  classification.check_data(config, config.data.name)


def inputs(config) -> list[str]:
  return sources.input_files(config.data.name, config.data.get("data_dir") or None,
                             **classification.data_options(config, config.data.name))


def run(config, workdir, writer) -> dict:
  results = {config.data.name: classification.train_mlp(config, workdir, writer)}
  writer.flush()
  curves = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  title = f"MLP{tuple(config.model.hidden)} {config.model.activation} on {config.data.name}"
  metrics.save_figure(analysis.plot_curves(curves, title=title), workdir, "curves")
  return results


def claims(results, config) -> list[dict]:
  """None: the demo trains the configured MLP; note 8 compares activations with it."""
  del results, config
  return []
