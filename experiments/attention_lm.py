"""Char-level causal LM per attention kind at equal steps (configs/attention_lm.py)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import attention as attention_lib
from lmsys import metrics, text_lm, trainer
from lmsys.config import ConfigError, check_dir, data_dir
from lmsys.models.transformer import CausalLM


@functools.lru_cache(maxsize=2)
def _corpus(directory, min_count, max_documents, seed):
  return text_lm.load_corpus(directory, min_count=min_count, max_documents=max_documents or None,
                             seed=seed)


def corpus(config):
  return _corpus(data_dir(config), config.data.min_count, config.data.max_documents, config.seed)


def kind_params(spec) -> tuple[str, dict]:
  spec = dict(spec)
  return spec.pop("kind"), spec


def validate(config) -> None:
  trainer.validate_config(config)
  check_dir(data_dir(config), "data.data_dir")
  for name, spec in config.kinds.items():
    kind = spec.get("kind")
    if kind not in attention_lib.KINDS:
      raise ConfigError(f"config key 'kinds.{name}.kind': unknown attention kind {kind!r} "
                        f"(known: {', '.join(attention_lib.KINDS)})")
  for n in config.contexts:
    if not isinstance(n, int) or n <= 1 or config.tokens_per_batch % n:
      raise ConfigError(f"config key 'contexts': {n!r} must be an int > 1 dividing tokens_per_batch")
  corpus(config)  # missing files fail here


def make_model(config, vocab_size, kind, params, context):
  m = config.model
  return CausalLM(vocab_size=vocab_size, max_length=context, num_layers=m.num_layers,
                  num_heads=m.num_heads, head_dim=m.head_dim, attention=kind,
                  attention_params=params, ffn_ratio=m.ffn_ratio, activation=m.activation,
                  dropout_rate=m.dropout_rate)


def next_token_nll(model, params, windows, rngs=None, deterministic=True):
  """Mean negative log-likelihood (nats) of windows[:, 1:] given windows[:, :-1]."""
  logits = model.apply({"params": params}, windows[:, :-1], deterministic=deterministic,
                       rngs=rngs or {})
  return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()


def make_eval_fn(model, windows, batch=16):
  nll = jax.jit(lambda p, w: next_token_nll(model, p, w))

  def eval_fn(params):
    total = sum(float(nll(params, windows[i:i + batch])) * len(windows[i:i + batch])
                for i in range(0, len(windows), batch))
    mean = total / len(windows)
    return {"nll": mean, "bits_per_char": mean / math.log(2)}
  return eval_fn


def train_lm(config, workdir, writer, kind, params, context, name):
  """Trains one CausalLM with the shared trainer; returns (model, TrainResult)."""
  text = corpus(config)
  model = make_model(config, text.vocab_size, kind, params, context)
  batch_size = config.tokens_per_batch // context
  run_config = config.copy_and_resolve_references()
  run_config.train.batch_size = batch_size

  def loss_fn(p, batch, rng):
    dropout_rng, attention_rng = jax.random.split(rng)
    nll = next_token_nll(model, p, batch["tokens"], deterministic=False,
                         rngs={"dropout": dropout_rng, "attention": attention_rng})
    return nll, {"bits_per_char": nll / math.log(2)}

  windows = text_lm.heldout_windows(text.heldout, context, config.data.heldout_windows)
  result = trainer.train(
      run_config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, context), jnp.int32))["params"],
      loss_fn=loss_fn,
      batch_fn=lambda step: {"tokens": text_lm.window_batch(text.train, batch_size, context,
                                                            config.seed, step)},
      eval_fn=make_eval_fn(model, windows),
      name=name)
  return model, result


def run(config, workdir, writer) -> dict:
  text = corpus(config)
  results = {"corpus": text.info, "runs": {}}
  for context in config.contexts:
    for name, spec in config.kinds.items():
      kind, params = kind_params(spec)
      run_name = f"{name}_n{context}"
      _, result = train_lm(config, workdir, writer, kind, params, context, run_name)
      tokens_per_second = result.steps_per_second * config.tokens_per_batch
      results["runs"][run_name] = {
          "kind": name, "context": context, "steps": result.step,
          "heldout_bits_per_char": result.eval_metrics["bits_per_char"],
          "train_bits_per_char": result.train_metrics.get("bits_per_char"),
          "train_tokens_per_second": tokens_per_second,
          "feature_dim": _finite(attention_lib.feature_dim(kind, config.model.head_dim, **params))}
      writer.write(result.step, f"{run_name}/summary", heldout_bits_per_char=result.eval_metrics["bits_per_char"],
                   train_tokens_per_second=tokens_per_second)
      print(f"{run_name}: held-out {result.eval_metrics['bits_per_char']:.3f} bits/char, "
            f"{tokens_per_second:.0f} tokens/s", flush=True)
  _figure(config, results, workdir)
  return results


def _finite(x):
  return None if x == math.inf else x


def _figure(config, results, workdir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
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
