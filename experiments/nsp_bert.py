"""Note 5: NSP-BERT zero-shot accuracy on FewCLUE (configs/nsp_bert.py)."""

from __future__ import annotations

import os

import jax
import numpy as np

from lmsys import data, metrics, timing
from lmsys.data import wordpiece
from lmsys.models import hf_bert
from lmsys.notes import nsp_bert
from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.models import bert
from lmsys.tasks import bert_pretrain


def _checkpoint_kind(path: str) -> str:
  """'random' | 'hf' | 'lmsys', or a ConfigError naming config key model.checkpoint."""
  if not path:
    return "random"
  if hf_bert.is_hf_bert_dir(path):
    if not os.path.isfile(os.path.join(path, "vocab.txt")):
      raise ConfigError(f"config key 'model.checkpoint': {path!r} has Hugging Face weights but no vocab.txt")
    return "hf"
  if os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(os.path.join(path, "checkpoints")):
    return "lmsys"
  raise ConfigError(f"config key 'model.checkpoint': {path!r} is neither a Hugging Face BERT directory "
                    f"(config.json, vocab.txt, model.safetensors or pytorch_model.bin) nor an lmsys "
                    f"bert_pretrain workdir (config.json, checkpoints/); run configs/nsp_bert_pretrain.py first "
                    f"or pass --config.model.checkpoint=PATH")


def validate(config) -> None:
  d = config.data
  unknown = [t for t in d.tasks if t not in nsp_bert.TASKS]
  if unknown or not d.tasks:
    raise ConfigError(f"config key 'data.tasks': unknown or empty {unknown or list(d.tasks)} "
                      f"(known: {', '.join(nsp_bert.TASKS)})")
  for task in d.tasks:  # files only: nothing is read here
    try:
      directory = data.fewclue_dir(task, d.data_dir or None)
    except ConfigError as e:
      raise ConfigError(f"config key 'data.data_dir': {e}") from None
    splits = {"data.eval_split": d.eval_split}
    if nsp_bert.mapping(task) == "samples":
      splits["data.threshold_split"] = d.threshold_split
    for key, split in splits.items():
      path = os.path.join(directory, f"{split}.json")
      if not os.path.isfile(path):
        raise ConfigError(f"config key '{key}': fewclue/{task} has no {split}.json ({path!r})")
    for name in nsp_bert.needed_files(task):
      if not os.path.isfile(os.path.join(directory, name)):
        raise ConfigError(f"fewclue/{task}: label file not found: {os.path.join(directory, name)!r}")
  if _checkpoint_kind(config.model.checkpoint) == "lmsys":
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
  config_lib.check_positive_int(config, "eval.batch_pairs")
  if not isinstance(d.eval_limit, int) or d.eval_limit < 0:
    raise ConfigError(f"config key 'data.eval_limit': expected an integer >= 0, got {d.eval_limit!r}")


def load_model(config):
  """(BertConfig, variables, vocab.txt path, description) for config.model.checkpoint."""
  path, dtype = config.model.checkpoint, config.model.dtype
  kind = _checkpoint_kind(path)
  if kind == "hf":
    cfg, variables = hf_bert.load_hf_bert(path)
    return cfg.replace(dtype=dtype), variables, os.path.join(path, "vocab.txt"), {"kind": "hugging_face", "path": path}
  if kind == "lmsys":
    cfg, variables, vocab, step = bert_pretrain.load_checkpoint(path)
    return cfg.replace(dtype=dtype), variables, vocab, {"kind": "lmsys_bert_pretrain", "path": path, "step": step}
  r = config.model.random
  vocab = bert_pretrain.vocab_path(config.data.data_dir or None, config.data.vocab_path)
  cfg = bert.BertConfig(vocab_size=wordpiece.load_tokenizer(vocab).get_vocab_size(), hidden_size=r.hidden_size,
                        num_hidden_layers=r.num_hidden_layers, num_attention_heads=r.num_attention_heads,
                        intermediate_size=r.intermediate_size, max_position_embeddings=r.max_position_embeddings,
                        dtype=dtype)
  variables = bert.init_params(cfg, jax.random.key(r.seed))
  return cfg, variables, vocab, {"kind": "random_init", "seed": r.seed}


def _limit(records, limit):
  return records[:limit] if limit else records


def run(config, workdir, writer) -> dict:
  d = config.data
  data_dir = d.data_dir or None
  cfg, variables, vocab, source = load_model(config)
  tokenizer = wordpiece.load_tokenizer(vocab, lowercase=config.model.lowercase)
  protocol = nsp_bert.check_protocol(config.get("protocol"))
  max_length = config.model.max_length or "released"
  log_prob = nsp_bert.bert_log_prob_fn(bert.BertForPreTraining(cfg))
  variables = jax.device_put(variables)
  print(f"model: {source}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}; max_length {max_length}",
        flush=True)

  rows = {}
  for step, task in enumerate(d.tasks):
    eval_records = _limit(data.load_fewclue(task, d.eval_split, data_dir), d.eval_limit)
    threshold_records = None
    if nsp_bert.mapping(task) == "samples":
      threshold_records = (eval_records if d.threshold_split == d.eval_split else
                           _limit(data.load_fewclue(task, d.threshold_split, data_dir), d.eval_limit))
    names = nsp_bert.label_texts(task, data_dir, tuple(dict.fromkeys([d.eval_split, "train_few_all", "dev_few_all"]))
                                 if task == "iflytek" else (d.eval_split,), protocol["tnews_labels"])
    length = nsp_bert.task_max_length(task, config.model.max_length, cfg.max_position_embeddings)
    scorer = nsp_bert.make_scorer(log_prob, variables, tokenizer, length, config.eval.batch_pairs, desc=task)
    with timing.Stopwatch() as watch:
      result = nsp_bert.zero_shot_task(task, scorer, eval_records, names, threshold_records, length,
                                       d.eval_split, d.threshold_split, protocol)
    separate = threshold_records is not None and threshold_records is not eval_records
    scored = len(eval_records) + (len(threshold_records) if separate else 0)
    row = {"accuracy": result.accuracy, **nsp_bert.baselines(task, result.labels, result.candidates),
           "paper_bert_base": nsp_bert.PAPER_BERT_BASE[task] / 100, "mapping": result.mapping,
           "examples": len(eval_records), "candidates": result.candidates, "max_length": length,
           # How often the most-predicted label is predicted: 1 / C for a balanced predictor,
           # 1.0 for one that always picks the same candidate (a prompt bias).
           "top_prediction_share": float(np.bincount(result.predictions).max() / len(result.predictions)),
           "pairs_per_second": scored * (result.candidates if result.mapping == "candidates" else 1) / watch.seconds,
           "seconds": watch.seconds}
    if result.thresholds is not None:
      row["threshold_split_accuracy"] = result.threshold_split_accuracy
      row["thresholds"] = result.thresholds
    rows[task] = row
    writer.write(step, f"zero_shot/{task}", {k: v for k, v in row.items() if isinstance(v, (int, float))})
    print(f"{task}: accuracy {row['accuracy']:.4f} (majority {row['majority']:.4f}, random {row['random']:.4f}, "
          f"paper {row['paper_bert_base']:.3f}) {len(eval_records)} examples, {watch.seconds:.0f} s", flush=True)

  average = {key: float(np.mean([rows[t][key] for t in rows]))
             for key in ("accuracy", "majority", "random", "paper_bert_base")}
  metrics.save_figure(_figure(rows), workdir, "nsp_bert")
  return {"model": {**source, "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                    "max_length": max_length},
          "protocol": protocol, "eval_split": d.eval_split, "threshold_split": d.threshold_split, "tasks": rows,
          "average": {**average, "tasks": len(rows)}}


def summary(results) -> list[str]:
  rows, avg = results["tasks"], results["average"]
  above = [t for t, r in rows.items() if r["accuracy"] > max(r["majority"], r["random"])]
  return [f"average zero-shot accuracy over {avg['tasks']} tasks ({results['eval_split']}): ours "
          f"{100 * avg['accuracy']:.2f}, majority {100 * avg['majority']:.2f}, random {100 * avg['random']:.2f}; "
          f"paper (BERT-base) {100 * avg['paper_bert_base']:.2f} on these tasks (the note's 9-task average: "
          f"{nsp_bert.PAPER_AVERAGE})",
          f"above both baselines: {', '.join(above) or 'none'} ({len(above)} of {len(rows)}); "
          f"model: {results['model']['kind']}"]


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
