"""Note 7 (kexue 8802): decoding runs on KgCLUE, compared question by question.

Training, the trie and the decoders are `lmsys.tasks.kbqa`; here is what the experiment
(configs/kgclue.py) does with them: every decoding run of `config.decode.runs` over the same
dev questions, scored per question (EM, F1), and which runs differ by exactly one step
(the trie constraint, or the look-ahead rule) so that they can be compared pairwise.

  python -m experiments.run --config configs/kgclue.py --workdir runs/kgclue
"""

from __future__ import annotations

import numpy as np

from lmsys import claims, metrics, timing
from lmsys.tasks import kbqa


def decode_runs(config, model, params, data, split: str, golds: list[str], writer, step: int):
  """(rows, per_question): per run of config.decode.runs (`kbqa.decode_runs`) its scores,
  settings, fact rate, unfinished/cut counts and time; per run the per-question EM (bool) and
  F1 lists, in question order."""
  rows, per_question = {}, {}
  for name, run in kbqa.decode_runs(config.decode).items():
    with timing.Stopwatch() as watch:
      pred = kbqa.predict(model, params, data, split, beam_size=run.beam, constrained=run.constrained,
                          lookahead=run.lookahead, distractors=run.distractors, renormalise=run.renormalise,
                          length_penalty=run.length_penalty, batch_size=config.decode.batch_size)
    rows[name] = {**kbqa.score_answers(pred.objects, golds), **run._asdict(),
                  "fact_rate": float(np.mean([f is not None for f in pred.facts])),
                  "unfinished": int((~pred.finished).sum()), "cut": int(pred.cut.sum()),
                  "seconds": watch.seconds, "examples": len(golds)}
    pairs = [(kbqa.normalize_answer(o), kbqa.normalize_answer(g)) for o, g in zip(pred.objects, golds)]
    per_question[name] = {"em": [o == g for o, g in pairs], "f1": [kbqa.f1_score(o, g) for o, g in pairs]}
    writer.write(step, f"decode/{name}", rows[name])
    print(f"{name}: EM {rows[name]['em']:.4f} F1 {rows[name]['f1']:.4f} facts {rows[name]['fact_rate']:.3f} "
          f"unfinished {rows[name]['unfinished']} cut {rows[name]['cut']} ({watch.seconds:.0f} s)", flush=True)
  return rows, per_question


def one_step_apart(before: dict, after: dict) -> bool:
  """`after` adds exactly one thing to `before` at the same beam and base: the trie
  constraint, or the look-ahead rule."""
  if (before["beam"] != after["beam"] or before["distractors"] != after["distractors"]
      or before.get("renormalise") != after.get("renormalise")):
    return False
  return ((not before["constrained"] and after["constrained"] and not after["lookahead"])
          or (before["constrained"] and not before["lookahead"] and after["lookahead"]))


def paired_intervals(rows: dict, per_question: dict) -> dict:
  """{"after-before": {"em": [lo, hi], "f1": [lo, hi]}}: the paired bootstrap over questions of
  every pair of runs one step apart."""
  return {f"{a}-{b}": {k: claims.paired_bootstrap(per_question[a][k], per_question[b][k]) for k in ("em", "f1")}
          for a in rows for b in rows if a != b and one_step_apart(rows[b], rows[a])}


def decoding_figure(rows):
  """EM and F1 per decoding run."""
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
