"""Note 8: SquarePlus constants, speed, and its effect on trained models (configs/squareplus.py).

The trained models are other experiments' own configs, trained through the library's
task code once per activation at equal steps: the MLP of configs/mlp.py
(lmsys.tasks.classification) and, where configs/attention_approx_lm.py exists with a
`model.activation` key, its char LM (lmsys.tasks.lm).
"""

from __future__ import annotations

import os

import numpy as np

from lmsys import metrics, trainer
from lmsys.data import char_corpus
from lmsys.nn import activations, attention
from lmsys.notes import squareplus
from lmsys.config import ConfigError, check_positive_int, get, load_config_file
from lmsys.tasks import classification, lm


def validate(config) -> None:
  for key in ("speed.size", "speed.repeats", "mlp.num_steps", "attention_lm.num_steps"):
    check_positive_int(config, key)
  for key in ("speed.activations", "mlp.activations", "attention_lm.activations"):
    for name in get(config, key):
      if name not in activations.ACTIVATIONS:
        raise ConfigError(f"config key '{key}': unknown activation {name!r} "
                          f"(known: {', '.join(activations.ACTIVATIONS)})")
  for act in config.mlp.activations:
    for seed in config.mlp.seeds:
      c = mlp_config(config, act, seed)
      trainer.validate_config(c)
      classification.check_data(c, c.data.name)
  configs = lm_configs(config)
  for c in (configs.values() if isinstance(configs, dict) else ()):
    trainer.validate_config(c)
    try:  # files only; the corpus is read by run()
      char_corpus.check_available(c.data.data_dir or None)
    except ConfigError as e:
      raise ConfigError(f"config key 'attention_lm' ({config.attention_lm.config}): {e}") from None


def mlp_config(config, activation: str, seed: int):
  c = load_config_file(config.mlp.config, config.mlp.variant or None)
  c.data.name = config.mlp.dataset
  c.data.data_dir = config.mlp.data_dir  # "" = the loader's own default
  c.model.activation = activation
  c.seed = seed
  c.train.num_steps = config.mlp.num_steps
  c.train.eval_every = c.train.checkpoint_every = config.mlp.num_steps
  c.train.progress_bar = False
  return c


def run_mlp(config, workdir, writer):
  rows = {}
  for act in config.mlp.activations:
    runs = [classification.train_mlp(mlp_config(config, act, seed), workdir, writer, name=f"mlp_{act}_seed{seed}")
            for seed in config.mlp.seeds]
    row = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    if len(runs) > 1:
      row["test_accuracy_std"] = float(np.std([r["test_accuracy"] for r in runs]))
    row["seeds"] = len(runs)
    rows[act] = row
    writer.write(config.mlp.num_steps, f"mlp/{act}", row)
  return rows


def text_lm_corpus(c, corpora: dict):
  """The char corpus of config `c`, read once per distinct data setting of this run."""
  key = (c.data.data_dir, c.data.min_count, c.data.max_documents, c.seed)
  if key not in corpora:
    corpora[key] = lm.load_corpus(c)
  return corpora[key]


def lm_configs(config):
  """{activation: the char-LM config to train} from configs/attention_approx_lm.py, or a reason to skip."""
  cfg = config.attention_lm
  if not cfg.activations:
    return "no activations configured"
  if not os.path.isfile(cfg.config):
    return f"{cfg.config} does not exist"
  out = {}
  for act in cfg.activations:
    c = load_config_file(cfg.config, cfg.variant or None)
    if get(c, "model.activation") is None:
      return f"{cfg.config} has no model.activation key"
    c.model.activation = act
    c.train.num_steps = c.train.eval_every = c.train.checkpoint_every = cfg.num_steps
    if get(c, "kinds") is not None:
      missing = [k for k in cfg.kinds if k not in c.kinds]
      if missing:
        raise ConfigError(f"config key 'attention_lm.kinds': {missing} not in {cfg.config}'s kinds")
      c.kinds = {k: c.kinds[k].to_dict() for k in cfg.kinds}
    if get(c, "contexts") is not None:
      c.contexts = tuple(cfg.contexts)
    c.train.progress_bar = False
    for name, spec in c.kinds.items():
      if spec.get("kind") not in attention.KINDS:
        raise ConfigError(f"{cfg.config}: kinds.{name}.kind {spec.get('kind')!r} is not an attention kind")
    out[act] = c
  return out


def run_attention_lm(config, workdir):
  """The char LM of configs/attention_approx_lm.py per FFN activation, or why it was not run."""
  configs = lm_configs(config)
  if isinstance(configs, str):
    return {"skipped": configs}
  rows, corpora = {}, {}
  for act, c in configs.items():
    subdir = os.path.join(workdir, "attention_lm", act)
    with metrics.Writer(subdir) as sub_writer:
      result = lm.train_every_kind(c, subdir, sub_writer, text_lm_corpus(c, corpora), log=None)
    metrics.write_json(os.path.join(subdir, "results.json"), result)
    rows[act] = result
  return rows


def speed_figure(speed, mlp_rows):
  plt = metrics.pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
  names = list(speed)
  x = np.arange(len(names))
  a.bar(x - 0.2, [speed[n]["forward_ratio_to_relu"] for n in names], 0.4, label="forward")
  a.bar(x + 0.2, [speed[n]["forward_backward_ratio_to_relu"] for n in names], 0.4, label="forward+backward")
  a.set_xticks(x, names, rotation=20)
  a.set(ylabel="time / relu time", title="activation speed")
  a.legend(fontsize=8)
  acts = list(mlp_rows)
  b.bar(np.arange(len(acts)), [mlp_rows[k]["test_accuracy"] for k in acts])
  low = min(mlp_rows[k]["test_accuracy"] for k in acts)
  b.set_ylim(max(0.0, low - 0.02), min(1.0, max(mlp_rows[k]["test_accuracy"] for k in acts) + 0.01))
  b.set_xticks(np.arange(len(acts)), acts, rotation=20)
  b.set(ylabel="test accuracy", title="MLP at equal steps")
  return fig


def curve_figure(const):
  plt = metrics.pyplot()
  xs = np.linspace(-6, 6, 601)
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
  a.plot(xs, squareplus.softplus_np(xs), "k", label="softplus")
  for b_value, label in ((0.0, "b=0 (relu)"), (const["minimax_b"], "b=minimax"),
                         (const["b_min_above_softplus"], "b=4 log^2 2"), (4.0, "b=4")):
    a.plot(xs, squareplus.squareplus_np(xs, b_value), label=label)
    if b_value > 0:
      b.plot(xs, squareplus.gap(xs, b_value), label=label)
  b.axhline(0, color="k", lw=0.8)
  a.legend(fontsize=8)
  b.set(title="squareplus - softplus")
  b.legend(fontsize=8)
  return fig


def run(config, workdir, writer) -> dict:
  const = squareplus.constants()
  writer.write(0, "constants", const)
  metrics.save_figure(curve_figure(const), workdir, "squareplus_vs_softplus")
  speed = squareplus.activation_speed(config.speed.activations, size=config.speed.size,
                                           repeats=config.speed.repeats)
  for name, row in speed.items():
    writer.write(0, f"speed/{name}", row)
  mlp_rows = run_mlp(config, workdir, writer)
  metrics.save_figure(speed_figure(speed, mlp_rows), workdir, "speed_and_mlp")
  return {"constants": const, "speed": speed, "mlp": mlp_rows,
          "attention_lm": run_attention_lm(config, workdir)}
