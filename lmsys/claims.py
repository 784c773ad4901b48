"""A note's claims as records with a computed verdict: what `claims.json` in a workdir holds.

A claim is one sentence as the note makes it, the value this run measured, the baseline
it is compared with, an uncertainty and a verdict. Each experiment's `claims(results,
config)` returns a list of records made by `claim` (or `not_measured`), and the runner
writes them to `claims.json` and prints them as the run's last table (`format_table`).

A record (JSON object):
  id        short name of the claim, unique together with `dataset`
  note      the note's number ("1" .. "8") or "lmsys" for a claim about this code
  claim     the sentence
  dataset   the data set it was measured on, or null (one measurement, or the summary of
            the per-dataset records of the same id)
  metric    what `value` is, in words (accuracies are fractions in [0, 1])
  value     the measured number (null when not measured)
  interval  [lo, hi] of `value` (a 95% bootstrap over test examples, over seeds, or a
            binomial interval), or null where the measurement has no sampling noise
  baseline  {"name", "value", "converged", ...} the value is compared with, or null
  rule      {"kind", "target", "margin"}: how the verdict was computed (below)
  verdict   holds | fails | mixed | within noise | not measured
  detail    one line: the numbers behind the verdict, which baseline and why

The verdict rule (`verdict`; the results pages state it, `RULE_TEXT`):
  - not measured: no value (a smoke run, data missing), or the baseline did not converge
    or scores at or below chance: a verdict never rests on such a baseline;
  - kind "higher" (the claim: value > target): holds if the interval lies above target,
    fails if it lies below, within noise if it covers target; "lower" is the mirror;
  - kind "close" (the claim: |value - target| <= margin): holds if the interval lies
    inside [target - margin, target + margin], fails if it lies wholly outside, within
    noise otherwise;
  - kind "at_most" (a bound, which data can only refute: value <= target): fails if the
    interval lies above target, holds otherwise; "at_least" is the mirror;
  - without an interval (a measurement without sampling noise) the value stands for it;
  - the summary record of several data sets (`summarize`): the common verdict when all
    agree, mixed when they differ, not measured when none was measured.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np

VERDICTS = ("holds", "fails", "mixed", "within noise", "not measured")
KINDS = ("higher", "lower", "close", "at_most", "at_least")
CLAIMS_FILE = "claims.json"

RULE_TEXT = (
    "Verdicts are computed by `lmsys.claims.verdict`: *not measured* when there is no value or "
    "the baseline did not converge or scores at or below chance; for a claim that a value is "
    "higher (lower) than a target, *holds* when the whole 95% interval lies above (below) it, "
    "*fails* when it lies wholly on the other side, *within noise* when it covers the target; "
    "for a claim that two values are close, *holds* when the interval lies inside "
    "target ± margin, *fails* when it lies wholly outside, *within noise* otherwise; a bound "
    "(value at most / at least a target) *fails* only when the interval lies wholly beyond "
    "it. Without an interval (no sampling noise) the value stands for the interval. A claim "
    "over several data sets is *mixed* when their verdicts differ.")


def usable_baseline(baseline: dict | None) -> tuple[bool, str]:
  """(True, "") if a verdict may rest on `baseline`, else (False, why).

  A baseline is unusable when it did not converge (`converged` false) or scores at or below
  chance (`value` <= `chance`, where the record gives a chance level).
  """
  if baseline is None:
    return True, ""
  if not baseline.get("converged", False):
    return False, f"baseline {baseline.get('name')} did not converge"
  chance = baseline.get("chance")
  if chance is not None and baseline.get("value") is not None and baseline["value"] <= chance:
    return False, f"baseline {baseline.get('name')} scores {baseline['value']:.4g}, at or below chance {chance:.4g}"
  return True, ""


def verdict(value, interval=None, *, kind: str = "higher", target: float = 0.0, margin: float = 0.0,
            baseline: dict | None = None) -> str:
  """The verdict of one measurement (module docstring: the rule).

  Args:
    value: the measured number, or None (not measured).
    interval: [lo, hi] around value, or None for a measurement without sampling noise.
    kind: one of KINDS.
    target: the number the claim compares value with.
    margin: for kind "close", the largest |value - target| that counts as close.
    baseline: the baseline record the value rests on, or None.
  Returns:
    One of VERDICTS (never "mixed": that is `summarize`'s).
  """
  if kind not in KINDS:
    raise ValueError(f"unknown claim kind {kind!r} (known: {', '.join(KINDS)})")
  if value is None or (isinstance(value, float) and math.isnan(value)) or not usable_baseline(baseline)[0]:
    return "not measured"
  lo, hi = (value, value) if interval is None else (min(interval), max(interval))
  if kind in ("higher", "lower"):
    above, below = lo > target, hi < target
    if kind == "lower":
      above, below = below, above
    return "holds" if above else "fails" if below else "within noise"
  if kind == "close":
    if target - margin <= lo and hi <= target + margin:
      return "holds"
    if lo > target + margin or hi < target - margin:
      return "fails"
    return "within noise"
  beyond = lo > target if kind == "at_most" else hi < target
  return "fails" if beyond else "holds"


def baseline(name: str, value, converged: bool, **more) -> dict:
  """A baseline record: its name, its value, whether it converged, and e.g. `chance`, `why`."""
  return {"name": name, "value": _number(value), "converged": bool(converged), **more}


def strongest_baseline(candidates: Sequence[dict]) -> dict | None:
  """The baseline a verdict compares with: the highest-valued usable one (`usable_baseline`)
  of `candidates` (made by `baseline`); the first one when none is usable (the verdict then
  says why); None when there are none."""
  usable = [b for b in candidates if usable_baseline(b)[0]]
  return max(usable, key=lambda b: b["value"]) if usable else (candidates[0] if candidates else None)


def claim(id: str, note: str, text: str, *, metric: str, value, interval=None, dataset: str | None = None,
          baseline: dict | None = None, kind: str = "higher", target: float = 0.0, margin: float = 0.0,
          detail: str = "") -> dict:
  """A claim record with its verdict computed by `verdict` (module docstring: the fields)."""
  result = verdict(value, interval, kind=kind, target=target, margin=margin, baseline=baseline)
  ok, why = usable_baseline(baseline)
  if not ok:
    detail = f"{why}; {detail}" if detail else why
  return {"id": id, "note": str(note), "claim": text, "dataset": dataset, "metric": metric,
          "value": _number(value), "interval": None if interval is None else [_number(v) for v in interval],
          "baseline": baseline, "rule": {"kind": kind, "target": target, "margin": margin},
          "verdict": result, "detail": detail}


def not_measured(id: str, note: str, text: str, why: str, *, metric: str = "", dataset: str | None = None) -> dict:
  """A claim this run could not measure (smoke run, data missing), and why."""
  return {"id": id, "note": str(note), "claim": text, "dataset": dataset, "metric": metric, "value": None,
          "interval": None, "baseline": None, "rule": None, "verdict": "not measured", "detail": why}


def smoke(records: Sequence[dict]) -> list[dict]:
  """The records of a smoke run: every verdict `not measured` (sizes too small to judge), the
  rule's verdict kept in the detail so the code path stays visible."""
  out = []
  for r in records:
    if r["verdict"] != "not measured":
      r = dict(r, verdict="not measured", detail=f"smoke run, too small to judge (the rule gives: {r['verdict']})"
                                                 + (f"; {r['detail']}" if r["detail"] else ""))
    out.append(r)
  return out


def combine(verdicts: Sequence[str]) -> str:
  """One verdict for several data sets: the common one, mixed if they differ (not measured left out)."""
  measured = [v for v in verdicts if v != "not measured"]
  if not measured:
    return "not measured"
  return measured[0] if all(v == measured[0] for v in measured) else "mixed"


def summarize(records: Sequence[dict], detail: str = "") -> dict:
  """The summary record (dataset null) of per-dataset records of one claim.

  value: the mean of the measured values; verdict: `combine` of theirs; detail: the count
  per verdict with the data sets, then `detail`.
  """
  if not records:
    raise ValueError("summarize: no records")
  first = records[0]
  values = [r["value"] for r in records if r["value"] is not None and r["verdict"] != "not measured"]
  counts = []
  for v in VERDICTS:
    names = [str(r["dataset"]) for r in records if r["verdict"] == v]
    if names:
      counts.append(f"{v} on {len(names)} ({', '.join(names)})")
  text = "; ".join(counts) + (f". {detail}" if detail else "")
  return {"id": first["id"], "note": first["note"], "claim": first["claim"], "dataset": None,
          "metric": f"{first['metric']} (mean over {len(values)} sets)" if values else first["metric"],
          "value": _number(float(np.mean(values))) if values else None, "interval": None, "baseline": None,
          "rule": first.get("rule"), "verdict": combine([r["verdict"] for r in records]), "detail": text}


def with_summaries(records: Sequence[dict]) -> list[dict]:
  """The records grouped by id (first-seen order), each id with more than one data set
  followed by its `summarize` record."""
  out = []
  for claim_id in dict.fromkeys(r["id"] for r in records):
    group = [r for r in records if r["id"] == claim_id]
    out += group + ([summarize(group)] if len(group) > 1 else [])
  return out


# ---------------------------------------------------------------- uncertainty

def paired_bootstrap(a, b=None, *, samples: int = 2000, level: float = 0.95, seed: int = 0) -> list[float]:
  """[lo, hi] percentile interval of mean(a) - mean(b) over examples resampled together.

  a, b: per-example values on the same examples (e.g. 0/1 correct of two classifiers on one
  test set); b None gives the interval of mean(a). Resamples indices with replacement.
  """
  a = np.asarray(a, np.float64)
  diff = a if b is None else a - np.asarray(b, np.float64)
  if diff.ndim != 1 or len(diff) == 0:
    raise ValueError(f"paired_bootstrap: expected non-empty 1-d values, got shape {diff.shape}")
  rng = np.random.default_rng(seed)
  means = np.empty(samples)
  for start in range(0, samples, 256):  # chunks: samples x N indices at once can be large
    count = min(256, samples - start)
    means[start:start + count] = diff[rng.integers(0, len(diff), size=(count, len(diff)))].mean(1)
  tail = 100 * (1 - level) / 2
  return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def seed_interval(values, level: float = 0.95) -> list[float] | None:
  """[lo, hi] t-interval of the mean over seeds (None for fewer than 2 values)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return None
  half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
  return [float(values.mean() - half), float(values.mean() + half)]


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> list[float]:
  """[lo, hi] Clopper-Pearson interval of a success rate."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
  return [float(ci.low), float(ci.high)]


# ---------------------------------------------------------------- output

def write(workdir: str, records: Sequence[dict]) -> str:
  """Writes `records` to workdir/claims.json (after checking each); returns the path."""
  for r in records:
    check_record(r)
  path = os.path.join(workdir, CLAIMS_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(list(records), f, indent=1, allow_nan=False)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return path


def read(workdir: str) -> list[dict] | None:
  """The records of workdir/claims.json, or None when the run wrote none."""
  path = os.path.join(workdir, CLAIMS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


REQUIRED = ("id", "note", "claim", "dataset", "metric", "value", "interval", "baseline", "verdict", "detail")


def check_record(record: dict) -> None:
  """Raises ValueError naming what is wrong with a claim record (missing key, bad verdict)."""
  missing = [k for k in REQUIRED if k not in record]
  if missing:
    raise ValueError(f"claim {record.get('id')!r}: missing {', '.join(missing)}")
  if record["verdict"] not in VERDICTS:
    raise ValueError(f"claim {record['id']!r}: unknown verdict {record['verdict']!r}")
  interval = record["interval"]
  if interval is not None and (len(interval) != 2 or interval[0] > interval[1]):
    raise ValueError(f"claim {record['id']!r}: interval must be [lo, hi], got {interval!r}")


def format_value(value, interval=None) -> str:
  """'0.0123 [-0.004, 0.029]': 4 significant digits; '—' for no value."""
  if value is None:
    return "—"
  text = f"{value:.4g}" if isinstance(value, float) else str(value)
  if interval is not None:
    text += f" [{interval[0]:.3g}, {interval[1]:.3g}]"
  return text


def format_baseline(base: dict | None) -> str:
  if base is None:
    return "—"
  text = f"{base['name']} {format_value(base.get('value'))}"
  return text if base.get("converged") else text + " (not converged)"


def format_table(records: Sequence[dict]) -> str:
  """The run's last table: claim, data set, measured, baseline, verdict (plain text)."""
  rows = [("claim", "data", "measured [95% interval]", "baseline", "verdict")]
  for r in records:
    rows.append((f"{r['id']}: {r['claim']}", r["dataset"] or "all", format_value(r["value"], r["interval"]),
                 format_baseline(r["baseline"]), r["verdict"]))
  widths = [min(max(len(row[i]) for row in rows), 90 if i == 0 else 40) for i in range(5)]
  clip = lambda s, w: s if len(s) <= w else s[:w - 1] + "…"
  lines = ["  ".join(clip(c, w).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _number(value):
  """JSON-safe: numpy scalars to Python, NaN/inf to None."""
  if value is None or isinstance(value, (bool, str)):
    return value
  value = float(value) if not isinstance(value, int) else value
  return value if isinstance(value, int) or math.isfinite(value) else None
