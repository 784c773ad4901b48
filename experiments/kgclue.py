"""Note 7: seq2seq + trie-constrained decoding on KgCLUE (configs/kgclue.py)."""

from __future__ import annotations

import numpy as np

from lmsys import metrics, timing, trainer
from lmsys.data import kgclue
from lmsys.config import ConfigError
from lmsys.tasks import kbqa

# The note's numbers (kexue 8802): a pretrained base model, not comparable to ours trained from scratch.
NOTE_VALID = {"f1": 0.8920, "em": 0.9104}


# Keys that change only the evaluation of the trained model: a re-run with new decoding runs
# or another eval split re-decodes the checkpoint instead of refusing to resume.
EVALUATION_KEYS = ("decode.", "data.eval_split", "data.eval_limit")


def validate(config) -> None:
  trainer.validate_config(config)
  kgclue.check_order(config.data.order)
  try:  # files only: nothing is read here
    splits = kgclue.available_splits(config.data.data_dir or None)
    vocab = config.data.vocab_path or kgclue.vocab_path(config.data.data_dir or None)
  except ConfigError as e:
    raise ConfigError(f"config key 'data.data_dir': {e}") from None
  try:  # small: read in full (not UTF-8, no [PAD]/[UNK]/[CLS]/[SEP]: named here, before any compute)
    kgclue.load_tokenizer(path=vocab)
  except ConfigError as e:
    raise ConfigError(f"config key 'data.vocab_path': {e}") from None
  for key in ("train_split", "eval_split"):
    if config.data[key] not in splits:
      raise ConfigError(f"config key 'data.{key}': no {config.data[key]}.json in kgclue/ (have: {', '.join(splits)})")
  kbqa.decode_runs(config.decode)


def run(config, workdir, writer) -> dict:
  data = kbqa.load_data(config)
  model, result = kbqa.train(config, workdir, writer, data)
  split = config.data.eval_split
  if config.data.eval_limit:
    data.splits[split] = data.splits[split][:config.data.eval_limit]
  base_size = {"facts": len(data.base), "real_facts": data.base.num_real,
               "distractors": len(data.base) - data.base.num_real, "vocab_size": data.tokenizer.vocab_size}
  rows = {}
  for name, spec in kbqa.decode_runs(config.decode).items():
    with timing.Stopwatch() as watch:
      row = kbqa.evaluate_run(model, result.params, data, split, spec, batch_size=config.decode.batch_size)
    row.update(seconds=watch.seconds)
    rows[name] = row
    writer.write(result.step, f"decode/{name}", row)
    print(f"{name}: EM {row['em']:.4f} F1 {row['f1']:.4f} facts {row['fact_rate']:.3f} "
          f"unfinished {row['unfinished']} cut {row['cut']} ({watch.seconds:.0f} s)",
          flush=True)
  metrics.save_figure(_figure(rows), workdir, "kgclue")
  return {"order": data.order, "eval_split": split, "base": base_size, "train_steps": result.step,
          "train_token_accuracy": result.train_metrics.get("token_accuracy"), "decode": rows,
          "note_valid_pretrained": NOTE_VALID}


def summary(results) -> list[str]:
  rows = results["decode"]
  lines = []
  pairs = [(a, b) for a in rows for b in rows if a.startswith("unconstrained") and b.startswith("constrained_b")
           and rows[a]["beam"] == rows[b]["beam"] and rows[b]["distractors"]]
  for a, b in pairs[:1]:
    lines.append(f"constraint (beam {rows[a]['beam']}): EM {rows[a]['em']:.3f} -> {rows[b]['em']:.3f}, "
                 f"F1 {rows[a]['f1']:.3f} -> {rows[b]['f1']:.3f}; outputs that are facts "
                 f"{rows[a]['fact_rate']:.3f} -> {rows[b]['fact_rate']:.3f}")
  look = [n for n in rows if rows[n]["lookahead"]]
  for n in look[:1]:
    plain = next((m for m in rows if rows[m]["constrained"] and not rows[m]["lookahead"]
                  and rows[m]["beam"] == rows[n]["beam"] and rows[m]["distractors"] == rows[n]["distractors"]
                  and rows[m].get("renormalise") == rows[n].get("renormalise")), None)
    if plain:
      lines.append(f"look-ahead (note: ~+4 points): F1 {rows[plain]['f1']:.3f} -> {rows[n]['f1']:.3f}, "
                   f"EM {rows[plain]['em']:.3f} -> {rows[n]['em']:.3f}")
  lines.append(f"the note's valid F1/EM with a pretrained model: {NOTE_VALID['f1']:.3f}/{NOTE_VALID['em']:.3f} "
               f"(ours: from scratch, {results['train_steps']} steps)")
  return lines


def _figure(rows):
  plt = metrics.pyplot()
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 3.6))
  names = list(rows)
  x = np.arange(len(names))
  ax.bar(x - 0.2, [rows[n]["em"] for n in names], 0.4, label="EM")
  ax.bar(x + 0.2, [rows[n]["f1"] for n in names], 0.4, label="F1")
  ax.set_xticks(x, names, rotation=25, ha="right")
  ax.set_ylim(0, 1)
  ax.set_title("KgCLUE: answer EM / F1 by decoding")
  ax.legend()
  return fig
