"""Note 5: a small BERT pretrained from scratch with MLM + NSP (configs/nsp_bert_pretrain.py).

Pretraining is `lmsys.tasks.bert_pretrain`; the workdir is what configs/nsp_bert.py loads
(`--config.model.checkpoint=WORKDIR`). The claim: its NSP head learned something (above 0.5
on held-out pairs; a binomial interval over those pairs).
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np

from lmsys import analysis, checks, data, metrics
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.data import wordpiece
from lmsys.tasks import bert_pretrain

CHECKS = [(checks.trained,), (checks.each_one_of, "data.tasks", tuple(bert_pretrain.TEXT_FIELDS), "task"),
          *[(checks.positive_int, f"pretrain.{k}") for k in ("max_length", "max_predictions", "eval_pairs",
                                                              "eval_batch_size")],
          (checks.fraction, "pretrain.mask_rate"), (checks.fraction, "pretrain.next_rate"),
          (checks.fraction, "data.heldout_fraction")]


def validate(config) -> None:
  d = config.data
  checks.apply(config, CHECKS)
  checks.data_files(config, "data.data_dir", lambda: bert_pretrain.corpus_files(d.data_dir or None, d.tasks,
                                                                                d.train_split))
  data.vocab_path(d.data_dir or None, d.vocab_path)  # ConfigError naming the key
  try:
    cfg = bert_pretrain.bert_config(config, vocab_size=1)
  except ConfigError as e:
    raise ConfigError(f"config key 'model': {e}") from None
  if config.pretrain.max_length > cfg.max_position_embeddings:
    raise ConfigError(f"config key 'pretrain.max_length': {config.pretrain.max_length} > "
                      f"model.max_position_embeddings {cfg.max_position_embeddings}")


def inputs(config) -> list[str]:
  d = config.data
  return [path for _, path in bert_pretrain.corpus_files(d.data_dir or None, d.tasks, d.train_split)] + [
      data.vocab_path(d.data_dir or None, d.vocab_path)]


def run(config, workdir, writer) -> dict:
  vocab = data.vocab_path(config.data.data_dir or None, config.data.vocab_path)
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


def claims(results, config) -> list[dict]:
  pairs, nsp = config.pretrain.eval_pairs, results["heldout"]["nsp_accuracy"]
  return [C.claim("nsp_learned", "5", "The BERT pretrained here learns next-sentence prediction", kind="higher",
                  metric="held-out NSP accuracy", value=nsp, target=0.5,
                  interval=C.binomial_interval(round(nsp * pairs), pairs),
                  detail=f"MLM accuracy {results['heldout']['mlm_accuracy']:.3f}; {pairs} held-out pairs; "
                  f"{results['steps']} steps, {results['model']['parameters'] / 1e6:.1f}M parameters")]
