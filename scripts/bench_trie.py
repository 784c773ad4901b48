"""Build time and memory of lmsys.nn.trie (vectorised numpy) vs a Python dict-of-dicts trie.

Issue 12's targets: 1M sequences in <= 5 s and <= 240 MB. Measured at 20k and
1M synthetic sequences shaped like the KgCLUE retrieval base (`synthetic`:
`S [SEP] P [SEP] M [SEP]`, lengths 10-40 over the 21,128-token BERT
vocabulary, ~5 facts per subject, Zipf-distributed characters so that
prefixes are shared), plus the real base when the data is there.

Every measurement runs in a fresh subprocess (so that one's memory cannot hide
another's), which first makes its input, then:
  seconds: `timing.benchmark(jit=False)` best of `--repeats` (numpy) or one
    `timing.Stopwatch` run (dict trie);
  rss_mb: peak resident set during the build minus the resident set before
    it (freed heap first handed back with malloc_trim, and the kernel's peak
    reset via /proc/self/clear_refs, so the input's making does not count;
    `peak_reset` says whether that worked);
  tracemalloc_mb (numpy only, a separate untimed build): tracemalloc's peak of
    traced allocations during the build (numpy reports its buffers to it),
    the input excluded.
The input itself (padded uint16 tokens, 2 bytes a token) is not counted.
Also the device side: one jitted constrained step (next_token_mask + advance)
for 16 questions x 5 beams, on each trie.

  python scripts/bench_trie.py [--sizes 20000,1000000] [--dict_max 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from lmsys import timing
from lmsys.nn import trie

VOCAB = 21128      # bert-base-chinese
SEP, END = 102, 0  # [SEP], [PAD]
FIRST_CHAR = 672   # ids below are [unused*] / specials / punctuation: chars are drawn above


def _zipf_ids(rng, size, low, high, a=1.15):
  """Ids in [low, high) with Zipf-like frequencies (a few very common, a long tail)."""
  ranks = rng.zipf(a, size) - 1
  ranks %= high - low
  return (low + ranks).astype(np.uint16)


def _pieces(rng, count, min_len, max_len, low=FIRST_CHAR, high=VOCAB):
  """`count` random strings of chars: tokens [count, max_len] (0-padded) and lengths."""
  lengths = rng.integers(min_len, max_len + 1, count).astype(np.int32)
  tokens = _zipf_ids(rng, (count, max_len), low, high)
  tokens[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
  return tokens, lengths


def synthetic(n: int, seed: int = 0, facts_per_subject: int = 5, width: int = 40):
  """n sequences `S [SEP] P [SEP] M [SEP]` as (tokens uint16 [n, width] padded with END, lengths).

  Subjects: n / facts_per_subject strings of 4-14 chars; predicates: a pool of
  3,000 strings of 3-8 chars (drawn mildly skewed); senses: 70% empty, else one of 5,000 strings of
  2-15 chars, one per subject. Each sequence takes a subject (so a subject has
  ~facts_per_subject sequences) and a predicate; lengths 10-40. Duplicates are
  possible (as in a base) and are merged by the trie. Vectorised, seeded.
  """
  rng = np.random.default_rng(seed)
  num_subjects = max(1, n // facts_per_subject)
  subjects, subject_len = _pieces(rng, num_subjects, 4, 14)
  predicates, predicate_len = _pieces(rng, 3000, 3, 8)
  senses, sense_len = _pieces(rng, 5000, 2, 15)
  subject_sense = np.where(rng.random(num_subjects) < 0.7, -1, rng.integers(0, 5000, num_subjects))
  subject = rng.integers(0, num_subjects, n)
  predicate = (3000 * rng.random(n) ** 1.5).astype(np.int64)  # mildly skewed: the top one ~0.5%
  sense = subject_sense[subject]
  out = np.full((n, width), END, np.uint16)
  rows = np.arange(n)[:, None]
  offset = np.zeros(n, np.int64)
  for source, length in ((subjects[subject], subject_len[subject]),
                         (predicates[predicate], predicate_len[predicate]),
                         (np.where(sense[:, None] >= 0, senses[sense], 0), np.where(sense >= 0, sense_len[sense], 0))):
    cols = offset[:, None] + np.arange(source.shape[1])[None, :]
    keep = np.arange(source.shape[1])[None, :] < length[:, None]
    out[np.broadcast_to(rows, cols.shape)[keep], cols[keep]] = source[keep]
    offset += length
    out[np.arange(n), offset] = SEP
    offset += 1
  return out, offset.astype(np.int32)


def dict_trie(sequences):
  """The baseline: a dict of dicts, one level per token; None marks an end."""
  root = {}
  for seq in sequences:
    node = root
    for t in seq:
      node = node.setdefault(t, {})
    node[None] = True
  return root


# ---------------------------------------------------------------- one measurement (a subprocess)

def _rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak():
  """Returns freed heap pages to the system (glibc malloc_trim), so that the resident set before
  the build holds no reusable free memory, then resets the kernel's peak (VmHWM)."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _peak_rss_bytes():
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(kind: str, n: int, repeats: int, data_dir: str | None) -> dict:
  """Runs in a fresh process: builds one trie and reports time, memory and size."""
  if kind == "real":
    from lmsys.data import kgclue  # pylint: disable=g-import-not-at-top
    from lmsys.tasks import kbqa  # pylint: disable=g-import-not-at-top
    out = {}
    for name, per in (("without_distractors", 0), ("with_distractors", None)):
      with timing.Stopwatch() as sw:
        base = kgclue.build_base(data_dir) if per is None else kgclue.build_base(data_dir, distractors=0,
                                                                                 sense_distractors=0)
      tok = kgclue.load_tokenizer(data_dir)
      with timing.Stopwatch() as enc:
        tokens, lengths = kbqa.target_arrays(base, tok)
      built = timing.benchmark(lambda: trie.build_trie(tokens, lengths, tok.vocab_size, tok.pad_id),
                               jit=False, repeats=repeats)
      t = trie.build_trie(tokens, lengths, tok.vocab_size, tok.pad_id)
      out[name] = {"facts": len(base), "real_facts": base.num_real, "distractors": len(base) - base.num_real,
                   "entities": len({(f.subject, f.sense) for f in base.facts}),
                   "subjects": len({f.subject for f in base.facts}),
                   "distinct_sequences": int((t.value >= 0).sum()), "nodes": t.num_nodes,
                   "max_fanout_nonroot": t.max_fanout, "root_fanout": int(t.root_mask.sum()),
                   "mean_length": float(lengths.mean()), "max_length": int(lengths.max()),
                   "load_s": sw.seconds, "tokenize_s": enc.seconds, "build_s": built.best_seconds,
                   "trie_mb": t.nbytes() / 2**20, "step": _device_step(t)}
    return out
  tokens, lengths = synthetic(n)
  if kind == "dict":
    seqs = [tuple(r[:k].tolist()) for r, k in zip(tokens, lengths)]
    del tokens
    reset = _reset_peak()
    rss0 = _rss_bytes()
    with timing.Stopwatch() as sw:
      d = dict_trie(seqs)
    peak = _peak_rss_bytes()
    return {"seconds": sw.seconds, "rss_mb": (peak - rss0) / 2**20, "peak_reset": reset, "top_level": len(d)}
  build = lambda: trie.build_trie(tokens, lengths, VOCAB, END)
  reset = _reset_peak()
  rss0 = _rss_bytes()
  with timing.Stopwatch() as first:
    t = build()
  peak = _peak_rss_bytes()
  del t
  tracemalloc.start()
  t = build()
  _, traced_peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  timed = timing.benchmark(build, jit=False, repeats=repeats)
  return {"seconds": timed.best_seconds, "median_s": timed.median_seconds, "first_s": first.seconds,
          "rss_mb": (peak - rss0) / 2**20, "peak_reset": reset, "tracemalloc_mb": traced_peak / 2**20,
          "input_mb": (tokens.nbytes + lengths.nbytes) / 2**20, "nodes": t.num_nodes,
          "distinct_sequences": int((t.value >= 0).sum()), "max_fanout_nonroot": t.max_fanout,
          "root_fanout": int(t.root_mask.sum()), "trie_mb": t.nbytes() / 2**20,
          "mean_length": float(lengths.mean()), "step": _device_step(t)}


def _device_step(t, batch=16, beams=5, steps=20) -> dict:
  """Seconds of one jitted constrained step (mask + advance) for batch*beams beams, averaged
  over a `steps`-long lax.scan following allowed tokens (the first allowed token each time)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  arrays = trie.to_device(t)
  vocab = t.vocab_size

  def walk(arrays, nodes):
    def step(nodes, _):
      mask = trie.next_token_mask(arrays, nodes, vocab)
      choice = jnp.argmax(mask, axis=-1).astype(jnp.int32)
      return trie.advance(arrays, nodes, choice), None
    return jax.lax.scan(step, nodes, None, length=steps)[0]

  nodes = jnp.zeros(batch * beams, jnp.int32)
  timed = timing.benchmark(walk, arrays, nodes, repeats=5)
  return {"beams": batch * beams, "step_ms": 1e3 * timed.best_seconds / steps, "compile_s": timed.compile_seconds}


# ---------------------------------------------------------------- driver

def _run(kind, n, repeats, data_dir, timeout):
  cmd = [sys.executable, __file__, "--_one", f"{kind}:{n}", "--repeats", str(repeats)]
  if data_dir:
    cmd += ["--data_dir", data_dir]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return {"skipped": f"over {timeout} s"}
  if done.returncode:
    return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
  return json.loads(done.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="20000,1000000")
  parser.add_argument("--dict_max", type=int, default=1_000_000, help="largest size for the dict baseline")
  parser.add_argument("--dict_timeout", type=int, default=300)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--data_dir", default=None, help="data root for the real base (default $LMSYS_DATA_DIR)")
  parser.add_argument("--json", default=None, help="also write the numbers here")
  parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._one:
    kind, n = args._one.split(":")
    print(json.dumps(measure(kind, int(n), args.repeats, args.data_dir)))
    return

  import jax  # pylint: disable=g-import-not-at-top
  result = {"date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, jax backend {jax.default_backend()}",
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "sizes": {}}
  for n in (int(s) for s in args.sizes.split(",")):
    row = {"numpy": _run("numpy", n, args.repeats, args.data_dir, None)}
    if n <= args.dict_max:
      row["dict"] = _run("dict", n, 1, args.data_dir, args.dict_timeout)
      if "seconds" in row["dict"] and "seconds" in row["numpy"]:
        row["speedup"] = row["dict"]["seconds"] / row["numpy"]["seconds"]
        row["memory_ratio"] = row["dict"]["rss_mb"] / max(row["numpy"]["rss_mb"], 1e-9)
    result["sizes"][n] = row
    print(json.dumps({n: row}, indent=1), flush=True)
  try:
    from lmsys import data  # pylint: disable=g-import-not-at-top
    data.kgclue_dir(args.data_dir)
    result["real_base"] = _run("real", 0, args.repeats, args.data_dir, None)
  except Exception as e:  # no data: the synthetic numbers stand alone
    result["real_base"] = {"skipped": str(e)}
  print(json.dumps({"real_base": result["real_base"]}, indent=1), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
