"""Note 5: NSP-BERT zero-shot accuracy on FewCLUE (configs/nsp_bert.py).

The protocol is `lmsys.notes.nsp_bert`; the BERT (Hugging Face directory, bert_pretrain
workdir or random weights) is `lmsys.tasks.bert_pretrain.load_bert`. Accuracy is compared with
the majority label on the same examples by a paired bootstrap over examples.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lmsys import checks, data, metrics
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.data import wordpiece
from lmsys.models import bert
from lmsys.notes import nsp_bert
from lmsys.tasks import bert_pretrain

CHECKS = [(checks.each_one_of, "data.tasks", nsp_bert.TASKS, "task"), (checks.positive_int, "eval.batch_pairs"),
          (checks.non_negative_int, "data.eval_limit")]


def validate(config) -> None:
  d = config.data
  checks.apply(config, CHECKS)
  for task in d.tasks:  # files only: nothing is read here
    nsp_bert.check_task_files(task, d)
  if bert_pretrain.checkpoint_kind(config.model.checkpoint) == "lmsys":
    for name in (bert_pretrain.VOCAB_FILE, bert_pretrain.BERT_CONFIG_FILE):
      if not os.path.isfile(os.path.join(config.model.checkpoint, name)):
        raise ConfigError(f"config key 'model.checkpoint': {config.model.checkpoint!r} has no {name} "
                          f"(not a bert_pretrain workdir)")
  elif not config.model.checkpoint:
    data.vocab_path(d.data_dir or None, d.vocab_path)
  if config.model.max_length != 0 and config.model.max_length < 8:
    raise ConfigError(f"config key 'model.max_length': expected 0 (the released scripts') or at least 8, "
                      f"got {config.model.max_length!r}")
  nsp_bert.check_protocol(config.get("protocol"))


def inputs(config) -> list[str]:
  """Each task's evaluated split files and label lists (the model's files are named in its description)."""
  d = config.data
  names = lambda task: [f"{d.eval_split}.json", f"{d.threshold_split}.json", *nsp_bert.needed_files(task)]
  return [os.path.join(data.fewclue_dir(task, d.data_dir or None), n) for task in d.tasks for n in names(task)
          if os.path.isfile(os.path.join(data.fewclue_dir(task, d.data_dir or None), n))]


def run(config, workdir, writer) -> dict:
  d = config.data
  cfg, variables, vocab, source = bert_pretrain.load_bert(config)
  tokenizer = wordpiece.load_tokenizer(vocab, lowercase=config.model.lowercase)
  protocol = nsp_bert.check_protocol(config.get("protocol"))
  max_length = config.model.max_length or "released"
  log_prob = nsp_bert.bert_log_prob_fn(bert.BertForPreTraining(cfg))
  variables = jax.device_put(variables)
  print(f"model: {source}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}; max_length {max_length}", flush=True)
  make_task_scorer = lambda task, length: nsp_bert.make_scorer(log_prob, variables, tokenizer, length,
                                                               config.eval.batch_pairs, desc=task)
  rows = {}
  for step, task in enumerate(d.tasks):
    rows[task] = row = nsp_bert.evaluate_task(task, d, make_task_scorer, protocol, config.model.max_length,
                                              cfg.max_position_embeddings)
    writer.write(step, f"zero_shot/{task}", {k: v for k, v in row.items() if isinstance(v, (int, float))})
    print(f"{task}: accuracy {row['accuracy']:.4f} (majority {row['majority']:.4f}, random {row['random']:.4f}) "
          f"{row['examples']} examples, {row['seconds']:.0f} s", flush=True)
  average = {key: float(np.mean([rows[t][key] for t in rows])) for key in ("accuracy", "majority", "random",
                                                                            "paper_bert_base")}
  metrics.save_figure(nsp_bert.figure(rows), workdir, "nsp_bert")
  return {"model": {**source, "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                    "max_length": max_length},
          "protocol": protocol, "eval_split": d.eval_split, "threshold_split": d.threshold_split, "tasks": rows,
          "average": {**average, "tasks": len(rows)}}


def claims(results, config) -> list[dict]:
  out, model = [], results["model"]
  for task, row in results["tasks"].items():
    out.append(C.claim("above_majority", "5", "NSP-BERT zero-shot beats the majority label", dataset=task,
                       metric="accuracy minus the majority label's", value=row["accuracy"] - row["majority"],
                       interval=row.get("minus_majority_interval"), kind="higher",
                       detail=f"accuracy {row['accuracy']:.4f}, majority {row['majority']:.4f}, random "
                       f"{row['random']:.4f}; {row['examples']} examples; model {model['kind']}"))
    if model["kind"] == "hugging_face":
      out.append(C.claim("paper_accuracy", "5", "With BERT-base, zero-shot accuracy as in the paper", dataset=task,
                         metric="accuracy minus the paper's", value=row["accuracy"] - row["paper_bert_base"],
                         kind="close", margin=0.02, detail=f"paper {row['paper_bert_base']:.3f}; {model['path']}"))
    else:
      out.append(C.not_measured("paper_accuracy", "5", "With BERT-base, zero-shot accuracy as in the paper",
                                f"no pretrained BERT-base here (model: {model['kind']}); paper "
                                f"{row['paper_bert_base']:.3f}", dataset=task))
  return C.with_summaries(out)

