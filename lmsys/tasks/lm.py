"""Character-level language modelling with the shared trainer (notes 2, 3 and 8).

    text = lm.load_corpus(config)                       # lmsys.data.char_corpus.CharCorpus
    model, result = lm.train_lm(config, workdir, writer, text, "favor", {"num_features": 128}, 256, "favor_n256")

Config keys read: data.{data_dir, min_count, max_documents, heldout_windows},
model.* (the `TransformerConfig` fields), tokens_per_batch (batch size =
tokens_per_batch // context, so every context sees equal tokens per step),
seed, and the trainer's train.* / optimizer.*.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import data, trainer
from lmsys.data import char_corpus
from lmsys.models.transformer import CausalLM, TransformerConfig
from lmsys.nn import attention as attention_lib


def load_corpus(config) -> char_corpus.CharCorpus:
  return char_corpus.load_corpus(config.data.data_dir or None, min_count=config.data.min_count,
                             max_documents=config.data.max_documents or None, seed=config.seed)


def kind_params(spec) -> tuple[str, dict]:
  """{"kind": "favor", "num_features": 128} -> ("favor", {"num_features": 128})."""
  spec = dict(spec)
  return spec.pop("kind"), spec


def make_model(config, vocab_size: int, kind: str, params: dict, context: int) -> CausalLM:
  return CausalLM(TransformerConfig.from_config(config.model, attention=kind, attention_params=params),
                  vocab_size=vocab_size, max_length=context)


def next_token_nll(model, params, windows, rngs=None, deterministic=True, reduce=True):
  """Negative log-likelihood (nats) of windows[:, 1:] given windows[:, :-1]: mean, or per window."""
  logits = model.apply({"params": params}, windows[:, :-1], deterministic=deterministic,
                       rngs=rngs or {})
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:])
  return nll.mean() if reduce else nll.mean(-1)


def make_eval_fn(model, windows: np.ndarray, batch_size: int = 16):
  """params -> {"nll", "bits_per_char"} over all held-out windows, one compilation."""
  per_window = jax.jit(lambda p, w: {"nll": next_token_nll(model, p, w, reduce=False)})

  def eval_fn(params):
    nll = data.map_batches(lambda batch, _: per_window(params, batch["w"]), {"w": windows},
                           min(batch_size, len(windows)))["nll"]
    mean = float(np.mean(nll, dtype=np.float64))
    return {"nll": mean, "bits_per_char": mean / math.log(2)}
  return eval_fn


def heldout_bits_per_window(model, params, windows: np.ndarray, batch_size: int = 16) -> list[float]:
  """Bits per character of each held-out window (their mean is `make_eval_fn`'s bits_per_char):
  models evaluated on the same windows can be compared window by window."""
  per_window = jax.jit(lambda p, w: {"nll": next_token_nll(model, p, w, reduce=False)})
  nll = data.map_batches(lambda batch, _: per_window(params, batch["w"]), {"w": windows},
                         min(batch_size, len(windows)))["nll"]
  return [float(x) / math.log(2) for x in np.asarray(nll, np.float64)]


def train_lm(config, workdir, writer, text, kind: str, params: dict, context: int, name: str):
  """Trains one CausalLM on `text` with the shared trainer; returns (model, TrainResult)."""
  model = make_model(config, text.vocab_size, kind, params, context)
  batch_size = config.tokens_per_batch // context
  run_config = config.copy_and_resolve_references()
  run_config.train.batch_size = batch_size

  def loss_fn(p, batch, rng):
    dropout_rng, attention_rng = jax.random.split(rng)
    nll = next_token_nll(model, p, batch["tokens"], deterministic=False,
                         rngs={"dropout": dropout_rng, "attention": attention_rng})
    return nll, {"bits_per_char": nll / math.log(2)}

  windows = char_corpus.heldout_windows(text.heldout, context, config.data.heldout_windows)
  result = trainer.train(
      run_config, workdir, writer,
      init_fn=lambda rng: model.init(rng, jnp.zeros((1, context), jnp.int32))["params"],
      loss_fn=loss_fn,
      batch_fn=lambda step, process_index=0, process_count=1: {"tokens": char_corpus.window_batch(
          text.train, batch_size, context, config.seed, step, process_index, process_count)},
      eval_fn=make_eval_fn(model, windows),
      name=name)
  return model, result


def train_every_kind(config, workdir, writer, text, log=print) -> dict:
  """One LM per (context in config.contexts, kind in config.kinds) at equal steps: a results dict."""
  results = {"corpus": text.info, "runs": {}}
  for context in config.contexts:
    for name, spec in config.kinds.items():
      kind, params = kind_params(spec)
      run_name = f"{name}_n{context}"
      model, result = train_lm(config, workdir, writer, text, kind, params, context, run_name)
      tokens_per_second = result.steps_per_second * config.tokens_per_batch
      feature_dim = attention_lib.feature_dim(kind, config.model.head_dim, **params)
      results["runs"][run_name] = {
          "kind": name, "context": context, "steps": result.step,
          "heldout_bits_per_char": result.eval_metrics["bits_per_char"],
          "train_bits_per_char": result.train_metrics.get("bits_per_char"),
          "train_tokens_per_second": tokens_per_second,
          "feature_dim": None if feature_dim == math.inf else feature_dim,
          # The same windows for every kind at this context: paired comparisons (lmsys.claims).
          "heldout_bits_per_window": heldout_bits_per_window(
              model, result.params, char_corpus.heldout_windows(text.heldout, context, config.data.heldout_windows))}
      writer.write(result.step, f"{run_name}/summary", heldout_bits_per_char=result.eval_metrics["bits_per_char"],
                   train_tokens_per_second=tokens_per_second)
      if log:
        log(f"{run_name}: held-out {result.eval_metrics['bits_per_char']:.3f} bits/char, "
            f"{tokens_per_second:.0f} tokens/s")
  return results
