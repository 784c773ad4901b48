"""Note 5: NSP-BERT zero-shot accuracy on FewCLUE (configs/nsp_bert.py).

The protocol is `lmsys.notes.nsp_bert`; the BERT (Hugging Face directory, bert_pretrain
workdir or random weights) is `lmsys.tasks.bert_pretrain.load_bert`. Accuracy is compared with
the majority label on the same examples by a paired bootstrap over examples.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lmsys import checks, data, metrics, timing
from lmsys import claims as C
from lmsys.config import ConfigError
from lmsys.data import wordpiece
from lmsys.models import bert
from lmsys.notes import nsp_bert
from lmsys.tasks import bert_pretrain

CHECKS = [(checks.each_one_of, "data.tasks", nsp_bert.TASKS, "task"), (checks.positive_int, "eval.batch_pairs")]


def validate(config) -> None:
  d = config.data
  if not d.tasks:
    raise ConfigError(f"config key 'data.tasks': unknown or empty [] (known: {', '.join(nsp_bert.TASKS)})")
  checks.apply(config, CHECKS)
  for task in d.tasks:  # files only: nothing is read here
    directory = []
    checks.data_files(config, "data.data_dir", lambda: directory.append(data.fewclue_dir(task, d.data_dir or None)))
    splits = {"data.eval_split": d.eval_split, **({"data.threshold_split": d.threshold_split}
                                                   if nsp_bert.mapping(task) == "samples" else {})}
    for key, split in splits.items():
      if not os.path.isfile(path := os.path.join(directory[0], f"{split}.json")):
        raise ConfigError(f"config key '{key}': fewclue/{task} has no {split}.json ({path!r})")
    for name in nsp_bert.needed_files(task):
      if not os.path.isfile(path := os.path.join(directory[0], name)):
        raise ConfigError(f"fewclue/{task}: label file not found: {path!r}")
  if bert_pretrain.checkpoint_kind(config.model.checkpoint) == "lmsys":
    for name in (bert_pretrain.VOCAB_FILE, bert_pretrain.BERT_CONFIG_FILE):
      if not os.path.isfile(os.path.join(config.model.checkpoint, name)):
        raise ConfigError(f"config key 'model.checkpoint': {config.model.checkpoint!r} has no {name} "
                          f"(not a bert_pretrain workdir)")
  elif not config.model.checkpoint:
    bert_pretrain.vocab_path(d.data_dir or None, d.vocab_path)
  if config.model.max_length != 0 and config.model.max_length < 8:
    raise ConfigError(f"config key 'model.max_length': expected 0 (the released scripts') or at least 8, "
                      f"got {config.model.max_length!r}")
  nsp_bert.check_protocol(config.get("protocol"))
  checks.positive_int(config, "eval.batch_pairs")
  if not isinstance(d.eval_limit, int) or d.eval_limit < 0:
    raise ConfigError(f"config key 'data.eval_limit': expected an integer >= 0, got {d.eval_limit!r}")


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
  limit = lambda records: records[:d.eval_limit] if d.eval_limit else records
  rows = {}
  for step, task in enumerate(d.tasks):
    eval_records = limit(data.load_fewclue(task, d.eval_split, d.data_dir or None))
    threshold_records = None
    if nsp_bert.mapping(task) == "samples":
      threshold_records = (eval_records if d.threshold_split == d.eval_split else
                           limit(data.load_fewclue(task, d.threshold_split, d.data_dir or None)))
    names = nsp_bert.label_texts(task, d.data_dir or None, tuple(dict.fromkeys([d.eval_split, "train_few_all", "dev_few_all"]))
                                 if task == "iflytek" else (d.eval_split,), protocol["tnews_labels"])
    length = nsp_bert.task_max_length(task, config.model.max_length, cfg.max_position_embeddings)
    scorer = nsp_bert.make_scorer(log_prob, variables, tokenizer, length, config.eval.batch_pairs, desc=task)
    with timing.Stopwatch() as watch:
      result = nsp_bert.zero_shot_task(task, scorer, eval_records, names, threshold_records, length,
                                       d.eval_split, d.threshold_split, protocol)
    separate = threshold_records is not None and threshold_records is not eval_records
    scored = len(eval_records) + (len(threshold_records) if separate else 0)
    majority = result.labels == np.bincount(result.labels).argmax()
    rows[task] = {"accuracy": result.accuracy, **nsp_bert.baselines(task, result.labels, result.candidates),
           "paper_bert_base": nsp_bert.PAPER_BERT_BASE[task] / 100, "mapping": result.mapping,
           "examples": len(eval_records), "candidates": result.candidates, "max_length": length,
           # How often the most-predicted label is predicted: 1 / C for a balanced predictor,
           # 1.0 for one that always picks the same candidate (a prompt bias).
           "top_prediction_share": float(np.bincount(result.predictions).max() / len(result.predictions)),
           "pairs_per_second": scored * (result.candidates if result.mapping == "candidates" else 1) / watch.seconds,
           "seconds": watch.seconds,
           "minus_majority_interval": C.paired_bootstrap(result.predictions == result.labels, majority)}
    if result.thresholds is not None:
      rows[task].update(threshold_split_accuracy=result.threshold_split_accuracy, thresholds=result.thresholds)
    writer.write(step, f"zero_shot/{task}", {k: v for k, v in rows[task].items() if isinstance(v, (int, float))})
    print(f"{task}: accuracy {result.accuracy:.4f} (majority {rows[task]['majority']:.4f}, random "
          f"{rows[task]['random']:.4f}) {len(eval_records)} examples, {watch.seconds:.0f} s", flush=True)
  average = {key: float(np.mean([rows[t][key] for t in rows])) for key in ("accuracy", "majority", "random",
                                                                            "paper_bert_base")}
  metrics.save_figure(_figure(rows), workdir, "nsp_bert")
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


def _figure(rows):
  plt = metrics.pyplot()
  tasks = list(rows)
  fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(tasks)), 3.6))
  x = np.arange(len(tasks))
  for i, (key, label) in enumerate((("accuracy", "ours"), ("majority", "majority"), ("random", "random"),
                                    ("paper_bert_base", "paper (BERT-base)"))):
    ax.bar(x + (i - 1.5) * 0.2, [rows[t][key] for t in tasks], 0.2, label=label)
  ax.set_xticks(x, tasks, rotation=25, ha="right")
  ax.set_ylim(0, 1)
  ax.set_ylabel("accuracy")
  ax.set_title("NSP-BERT zero-shot accuracy (FewCLUE)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig
