"""Note 5: a small BERT pretrained from scratch with MLM + NSP (configs/nsp_bert_pretrain.py)."""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np

from lmsys import analysis, metrics, trainer
from lmsys.data import wordpiece
from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.tasks import bert_pretrain


def validate(config) -> None:
  trainer.validate_config(config)
  d, p = config.data, config.pretrain
  unknown = [t for t in d.tasks if t not in bert_pretrain.TEXT_FIELDS]
  if unknown or not d.tasks:
    raise ConfigError(f"config key 'data.tasks': unknown or empty {unknown or list(d.tasks)} "
                      f"(known: {', '.join(bert_pretrain.TEXT_FIELDS)})")
  for task in d.tasks:  # files only: nothing is read here
    try:
      bert_pretrain.corpus_files(d.data_dir or None, [task], d.train_split)
    except ConfigError as e:
      raise ConfigError(f"config key 'data.data_dir': {e}") from None
  bert_pretrain.vocab_path(d.data_dir or None, d.vocab_path)  # ConfigError naming the key
  for key in ("max_length", "max_predictions", "eval_pairs", "eval_batch_size"):
    config_lib.check_positive_int(config, f"pretrain.{key}")
  for key in ("mask_rate", "next_rate"):
    if not 0.0 < p[key] < 1.0:
      raise ConfigError(f"config key 'pretrain.{key}': expected a number in (0, 1), got {p[key]!r}")
  if not 0.0 < d.heldout_fraction < 1.0:
    raise ConfigError(f"config key 'data.heldout_fraction': expected a number in (0, 1), got {d.heldout_fraction!r}")
  try:
    cfg = bert_pretrain.bert_config(config, vocab_size=1)
  except ConfigError as e:
    raise ConfigError(f"config key 'model': {e}") from None
  if p.max_length > cfg.max_position_embeddings:
    raise ConfigError(f"config key 'pretrain.max_length': {p.max_length} > model.max_position_embeddings "
                      f"{cfg.max_position_embeddings}")


def run(config, workdir, writer) -> dict:
  vocab = bert_pretrain.vocab_path(config.data.data_dir or None, config.data.vocab_path)
  tokenizer = wordpiece.load_tokenizer(vocab)
  corpus = bert_pretrain.load_corpus(config, tokenizer)
  print(f"corpus: {corpus.info}", flush=True)
  cfg = bert_pretrain.bert_config(config, tokenizer.get_vocab_size())
  if jax.process_index() == 0:  # the workdir holds what the zero-shot config needs besides params
    shutil.copyfile(vocab, os.path.join(workdir, bert_pretrain.VOCAB_FILE))
    metrics.write_json(os.path.join(workdir, bert_pretrain.BERT_CONFIG_FILE), bert_pretrain.hf_config_dict(cfg))
  cfg, result = bert_pretrain.pretrain(config, workdir, writer, tokenizer, corpus)
  params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(result.params))
  frame = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  metrics.save_figure(analysis.plot_curves(frame, ("loss", "mlm_accuracy", "nsp_accuracy"),
                                           "BERT pretraining (MLM + NSP)"), workdir, "bert_pretrain")
  return {"corpus": corpus.info, "model": {**bert_pretrain.hf_config_dict(cfg), "parameters": params},
          "steps": result.step, "steps_per_second": result.steps_per_second,
          "train": result.train_metrics, "heldout": result.eval_metrics}


def summary(results) -> list[str]:
  h = results["heldout"]
  return [f"held-out MLM accuracy {h['mlm_accuracy']:.3f}, NSP accuracy {h['nsp_accuracy']:.3f} "
          f"(chance 0.5) after {results['steps']} steps ({results['model']['parameters'] / 1e6:.1f}M parameters)"]

