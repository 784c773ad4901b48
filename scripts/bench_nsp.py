"""Examples/s of NSP-BERT scoring: a jitted forward returning log P(IsNext) (note 5).

  python scripts/bench_nsp.py                                  # base + small, batch 32, length 128
  python scripts/bench_nsp.py --models small --small 4,256,4,1024 --dtype bfloat16 --json /tmp/nsp.json

Models (random weights: speed does not depend on them): `base` is BERT-base
(12 layers, hidden 768, 12 heads, intermediate 3072, the Chinese vocabulary of
21128), `small` the model pretrained here, `--small layers,hidden,heads,intermediate`.
Rows per model, all in one process so their ratios mean something on a shared
machine (`lmsys.timing.benchmark`: compile apart, best and median of the runs):
- `nsp`: `is_next_log_prob(model(...)[1])`, what zero-shot scoring runs; the MLM
  head's [B, L, V] logits are unused, so XLA drops them from the program.
- `nsp+mlm`: both logits returned, the price of not dropping that head.
Inputs are full-length rows (no padding): a padded batch costs the same.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from lmsys import timing
from lmsys.models import bert

BASE = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)


def model_config(name: str, small: str, vocab_size: int, dtype) -> bert.BertConfig:
  if name == "base":
    shape = BASE
  else:
    layers, hidden, heads, intermediate = (int(x) for x in small.split(","))
    shape = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                 intermediate_size=intermediate)
  return bert.BertConfig(vocab_size=vocab_size, dtype=dtype, **shape)


def bench_model(config: bert.BertConfig, batch: int, length: int, target_seconds: float) -> dict:
  model = bert.BertForPreTraining(config)
  params = bert.init_params(config)
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1000, config.vocab_size, (batch, length)), jnp.int32)
  types = jnp.asarray(np.arange(length)[None].repeat(batch, 0) >= length // 4, jnp.int32)
  mask = jnp.ones_like(ids)

  def nsp(params, ids, types, mask):
    return bert.is_next_log_prob(model.apply(params, ids, types, mask)[1])

  def nsp_and_mlm(params, ids, types, mask):
    mlm, nsp_logits = model.apply(params, ids, types, mask)
    return bert.is_next_log_prob(nsp_logits), mlm

  rows = {}
  for name, fn in (("nsp", nsp), ("nsp+mlm", nsp_and_mlm)):
    t = timing.benchmark(fn, params, ids, types, mask, target_seconds=target_seconds, max_repeats=20)
    rows[name] = {"examples_per_s": batch / t.best_seconds,
                  "median_examples_per_s": batch / t.median_seconds, **t.as_dict()}
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="base,small", help="comma-separated: base, small")
  parser.add_argument("--small", default="4,256,4,1024", help="layers,hidden,heads,intermediate")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--vocab_size", type=int, default=21128)
  parser.add_argument("--dtype", default="", help="default: bfloat16 on GPU/TPU, float32 on CPU")
  parser.add_argument("--target_seconds", type=float, default=5.0, help="timed seconds per row")
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)

  device = jax.devices()[0]
  dtype = args.dtype or ("float32" if device.platform == "cpu" else "bfloat16")
  print(f"device: {device.device_kind} ({device.platform}, {jax.device_count()} device(s)); "
        f"jax {jax.__version__}; dtype {dtype}; batch {args.batch}, length {args.length}", flush=True)
  result = {"device": device.device_kind, "platform": device.platform, "dtype": dtype,
            "batch": args.batch, "length": args.length, "models": {}}
  for name in args.models.split(","):
    config = model_config(name, args.small, args.vocab_size, jnp.dtype(dtype))
    rows = bench_model(config, args.batch, args.length, args.target_seconds)
    result["models"][name] = {"config": {k: getattr(config, k) for k in
                                         ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                          "intermediate_size", "vocab_size")}, "rows": rows}
    for row, r in rows.items():
      print(f"{name:6s} {row:8s} {r['examples_per_s']:10.1f} examples/s (best; median "
            f"{r['median_examples_per_s']:.1f}, {r['runs']} runs, compile {r['compile_s']:.1f} s)",
            flush=True)
  models = result["models"]
  if "base" in models and "small" in models:
    ratio = models["small"]["rows"]["nsp"]["examples_per_s"] / models["base"]["rows"]["nsp"]["examples_per_s"]
    result["small_over_base"] = ratio
    print(f"small / base NSP scoring speed (same run): {ratio:.1f}x")
  for name, m in models.items():
    rows = m["rows"]
    print(f"{name}: nsp / nsp+mlm speed (same run): "
          f"{rows['nsp']['examples_per_s'] / rows['nsp+mlm']['examples_per_s']:.2f}x")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
