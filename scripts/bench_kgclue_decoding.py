"""Cost of the trie constraint in beam search (note 7): constrained vs unconstrained, same beam.

Both run the same jitted decoder (lmsys.tasks.kbqa.decode_batch) for exactly max_target_length
steps (early_stop=False), so the ratio is the cost per step of the mask (and of the look-ahead)
and not a difference in how soon beams end. Batch 16 questions of the real dev split, beam 5,
the base with distractors; the model is freshly initialised (its weights do not change the cost)
unless --workdir names a trained kgclue run. Target: constrained <= 1.10x unconstrained.

  LMSYS_DATA_DIR=../shared/data python scripts/bench_kgclue_decoding.py [--beam 5] [--batch 16]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp

from lmsys import analysis, timing
from lmsys import config as config_lib
from lmsys.nn import trie as trie_lib
from lmsys.tasks import kbqa


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--beam", type=int, default=5)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--workdir", default="", help="a trained configs/kgclue.py run (default: random weights)")
  args = parser.parse_args()

  config = config_lib.load_config_file("configs/kgclue.py")
  data = kbqa.load_data(config)
  model = kbqa.make_model(config, data.tokenizer.vocab_size, data.max_target_length)
  source = jnp.asarray(data.arrays(config.data.eval_split, config.data.max_source_length,
                                   data.max_target_length)["source"][:args.batch])
  if args.workdir:
    params = analysis.load_run(args.workdir).restore(name="seq2seq")
  else:
    params = model.init(jax.random.key(0), source, jnp.zeros_like(source[:, :1]))["params"]
  trie, tables = kbqa.device_constraint(data, distractors=True, lookahead=True)
  tok = data.tokenizer

  def timed(use_trie, lookahead):
    fn = lambda: kbqa.decode_batch(model, params, source, trie, tables if lookahead else None,
                                   beam_size=args.beam, use_trie=use_trie,
                                   sep_id=tok.sep_id, bos_id=tok.cls_id, early_stop=False)
    return timing.benchmark(fn, jit=False, repeats=args.repeats)

  # Alternate the settings round by round, so machine noise hits all alike.
  settings = {"unconstrained": (False, False), "constrained": (True, False), "constrained+lookahead": (True, True)}
  times = {name: [] for name in settings}
  for name, (use_trie, lookahead) in settings.items():
    timed(use_trie, lookahead)  # compile
  for _ in range(3):
    for name, (use_trie, lookahead) in settings.items():
      times[name].extend(timed(use_trie, lookahead).times)
  steps = data.max_target_length
  base = statistics.median(times["unconstrained"])
  print(f"{jax.devices()[0].device_kind}: batch {args.batch} x beam {args.beam}, {steps} steps, "
        f"vocab {tok.vocab_size}, base {len(data.base)} facts (trie {trie_lib.TrieArrays(*map(jax.device_get, trie)).num_nodes} nodes)")
  for name, values in times.items():
    median = statistics.median(values)
    print(f"{name:22s} median {1e3 * median:8.1f} ms  ({args.batch * steps / median:8.0f} decoded tokens/s per beam, "
          f"{median / base:.3f}x unconstrained; min {1e3 * min(values):.1f} ms over {len(values)} runs)")


if __name__ == "__main__":
  main()
