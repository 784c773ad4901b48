"""Char-level causal LM per attention kind at equal steps (configs/attention_approx_lm.py)."""

from __future__ import annotations

import numpy as np

from lmsys.nn import attention as attention_lib
from lmsys import metrics, trainer
from lmsys.data import char_corpus
from lmsys.config import ConfigError
from lmsys.tasks import lm


def validate(config) -> None:
  trainer.validate_config(config)
  for name, spec in config.kinds.items():
    kind = spec.get("kind")
    if kind not in attention_lib.KINDS:
      raise ConfigError(f"config key 'kinds.{name}.kind': unknown attention kind {kind!r} "
                        f"(known: {', '.join(attention_lib.KINDS)})")
  for n in config.contexts:
    if not isinstance(n, int) or n <= 1 or config.tokens_per_batch % n:
      raise ConfigError(f"config key 'contexts': {n!r} must be an int > 1 dividing tokens_per_batch")
  try:  # files only; the corpus is read by run()
    char_corpus.check_available(config.data.data_dir or None)
  except ConfigError as e:
    raise ConfigError(f"config key 'data.data_dir': {e}") from None


def run(config, workdir, writer) -> dict:
  results = lm.train_every_kind(config, workdir, writer, lm.load_corpus(config),
                                log=lambda line: print(line, flush=True))
  _figure(config, results, workdir)
  return results


def _figure(config, results, workdir):
  plt = metrics.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  names = list(config.kinds.keys())
  for i, context in enumerate(config.contexts):
    runs = [results["runs"][f"{n}_n{context}"] for n in names]
    x = np.arange(len(names)) + 0.4 * i - 0.2
    axes[0].bar(x, [r["heldout_bits_per_char"] for r in runs], 0.4, label=f"context {context}")
    axes[1].bar(x, [r["train_tokens_per_second"] for r in runs], 0.4, label=f"context {context}")
  for ax, title in zip(axes, ("held-out bits per character", "training tokens / s")):
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set_title(title)
    ax.legend()
  metrics.save_figure(fig, workdir, "attention_lm")
