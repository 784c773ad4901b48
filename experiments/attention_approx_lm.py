"""Notes 2, 3: char-level causal LM per attention kind at equal steps (configs/attention_approx_lm.py).

Training and evaluation are `lmsys.tasks.lm.train_every_kind`. One seed per (kind, context):
kinds are compared on the same held-out windows by a paired bootstrap over windows, which
does not contain what a second training seed could move.
"""

from __future__ import annotations

import numpy as np

from lmsys import checks, metrics
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.data import char_corpus
from lmsys.nn import attention
from lmsys.tasks import lm

CHECKS = [(checks.trained,), (checks.positive_ints, "contexts", 2)]


def validate(config) -> None:
  checks.apply(config, CHECKS)
  for name in config.kinds:
    checks.one_of(config, f"kinds.{name}.kind", attention.KINDS, "attention kind")
  for n in config.contexts:
    if config.tokens_per_batch % n:
      raise ConfigError(f"config key 'contexts': {n!r} must be an int > 1 dividing tokens_per_batch")
  checks.data_files(config, "data.data_dir", lambda: char_corpus.check_available(config.data.data_dir or None))


def inputs(config) -> list[str]:
  return char_corpus.input_files(config.data.data_dir or None)


def run(config, workdir, writer) -> dict:
  results = lm.train_every_kind(config, workdir, writer, lm.load_corpus(config),
                                log=lambda line: print(line, flush=True))
  metrics.save_figure(_figure(config, results), workdir, "attention_lm")
  return results


def claims(results, config) -> list[dict]:
  out = []
  for context in config.contexts:
    runs = {r["kind"]: r for r in results["runs"].values() if r["context"] == context}
    if "softmax" not in runs:
      continue
    base = runs["softmax"]
    for name, r in runs.items():
      if name == "softmax":
        continue
      paired = "heldout_bits_per_window" in r and "heldout_bits_per_window" in base
      out.append(C.claim("softmax_best", "2, 3", "At equal steps softmax attention models text better than its "
                         "linear approximations", dataset=f"{name}, n={context}", kind="higher",
                         metric="held-out bits/char minus softmax's", value=r["heldout_bits_per_char"]
                         - base["heldout_bits_per_char"],
                         interval=C.paired_bootstrap(r["heldout_bits_per_window"], base["heldout_bits_per_window"])
                         if paired else None,
                         detail=f"{r['heldout_bits_per_char']:.3f} vs softmax {base['heldout_bits_per_char']:.3f} after "
                         f"{r['steps']} steps; one training seed, paired bootstrap over held-out windows"))
      if config.kinds[name].kind in ("taylor", "limit"):
        ratio = r["train_tokens_per_second"] / base["train_tokens_per_second"]
        out.append(C.claim("deterministic_maps_slow", "3", "The deterministic feature maps are too large to be "
                           "fast", dataset=f"{name}, n={context}", metric="training tokens/s over softmax's",
                           value=ratio, kind="lower", target=1.0,
                           detail=f"feature dimension {r['feature_dim']}; ratio of two timings in one run"))
  return C.with_summaries(out)


def _figure(config, results):
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
  return fig
