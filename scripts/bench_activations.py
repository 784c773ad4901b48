"""Speed of relu, squareplus, softplus and GELU (exact, tanh) on one large array (note 8).

Forward and forward+backward (jax.grad of sum(act(x))), each jitted, timed with
block_until_ready, best of --repeats after a compile call, all in one process so the
ratios to relu are comparable. Prints a table; --json writes the numbers.

  python scripts/bench_activations.py                    # 2^24 float32 values
  python scripts/bench_activations.py --size 4194304 --repeats 20 --json /tmp/act.json
"""

import argparse
import json

import jax

from lmsys.notes import squareplus

NAMES = ("relu", "squareplus", "softplus", "gelu", "gelu_tanh")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=1 << 24)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  rows = squareplus.activation_speed(NAMES, size=args.size, repeats=args.repeats)
  print(f"{args.size} float32 values on {jax.devices()[0].device_kind}, best of {args.repeats}")
  print(f"{'activation':12s} {'fwd ms':>9s} {'fwd/relu':>9s} {'fwd+bwd ms':>11s} {'fwd+bwd/relu':>13s}")
  for name, r in rows.items():
    print(f"{name:12s} {r['forward_ms']:9.2f} {r['forward_ratio_to_relu']:9.2f} "
          f"{r['forward_backward_ms']:11.2f} {r['forward_backward_ratio_to_relu']:13.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"size": args.size, "repeats": args.repeats, "device": jax.devices()[0].device_kind,
                 "activations": rows}, f, indent=2)


if __name__ == "__main__":
  main()
