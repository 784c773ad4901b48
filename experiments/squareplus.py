"""Note 8: SquarePlus constants, speed, and its effect on trained models (configs/squareplus.py).

Constants, speed and the trained models are `lmsys.notes.squareplus`. The MLP claims pair
the activations seed by seed (a t-interval over seeds); speed claims are ratios of two
timings in one run (no interval).
"""

from __future__ import annotations

import numpy as np

from lmsys import checks, metrics
from lmsys import claims as C
from lmsys.data import char_corpus
from lmsys.data import sources as data_sources
from lmsys.nn import activations
from lmsys.notes import squareplus

CHECKS = [*[(checks.positive_int, k) for k in ("speed.size", "speed.repeats", "mlp.num_steps",
                                               "attention_lm.num_steps")],
          *[(checks.each_one_of, k, activations.ACTIVATIONS, "activation")
            for k in ("speed.activations", "mlp.activations", "attention_lm.activations")]]
NOTE = {"b_min_above_softplus": 4 * np.log(2.0) ** 2, "minimax_b": 1.52382103, "minimax_max_error": 0.075931}


def validate(config) -> None:
  checks.apply(config, CHECKS)
  squareplus.check_trained_configs(config)


def inputs(config) -> list[str]:
  """The MLP's data set files and, where the char LM runs, its corpus."""
  mlp = squareplus.mlp_config(config, config.mlp.activations[0], config.mlp.seeds[0]) if config.mlp.activations else None
  files = data_sources.input_files(mlp.data.name, mlp.data.data_dir or None) if mlp else []
  lm_configs = squareplus.lm_configs(config)
  return files + (char_corpus.input_files(next(iter(lm_configs.values())).data.data_dir or None)
                  if isinstance(lm_configs, dict) and lm_configs else [])


def run(config, workdir, writer) -> dict:
  const = squareplus.constants()
  writer.write(0, "constants", const)
  metrics.save_figure(squareplus.curve_figure(const), workdir, "squareplus_vs_softplus")
  speed = squareplus.activation_speed(config.speed.activations, size=config.speed.size, repeats=config.speed.repeats)
  for name, row in speed.items():
    writer.write(0, f"speed/{name}", row)
  mlp_rows = squareplus.run_mlp(config, workdir, writer)
  metrics.save_figure(squareplus.speed_figure(speed, mlp_rows), workdir, "speed_and_mlp")
  return {"constants": const, "speed": speed, "mlp": mlp_rows,
          "attention_lm": squareplus.run_attention_lm(config, workdir)}


def claims(results, config) -> list[dict]:
  const, out = results["constants"], []
  for key, text, digits in (("b_min_above_softplus", "SquarePlus >= softplus everywhere iff b >= 4 log^2 2 = 1.92181", 6),
                            ("minimax_b", "The minimax fit of SquarePlus to softplus is b = 1.52382103", 8),
                            ("minimax_max_error", "The largest error of that fit is 0.075931", 6)):
    out.append(C.claim(key, "8", text, metric="computed constant", value=const[key], kind="close",
                       target=float(NOTE[key]), margin=0.5 * 10.0 ** -digits,
                       detail=f"the note's value to the {digits} decimals it gives"))
  speed = results["speed"]
  if "softplus" in speed and "squareplus" in speed:
    for key in ("forward_ms", "forward_backward_ms"):
      out.append(C.claim("faster_than_softplus", "8", "SquarePlus is cheaper to compute than softplus",
                         dataset=key[:-3], metric="SquarePlus time / softplus time", kind="lower", target=1.0,
                         value=speed["squareplus"][key] / speed["softplus"][key],
                         detail=f"{speed['squareplus'][key]:.3g} ms vs {speed['softplus'][key]:.3g} ms"))
  mlp = results["mlp"]
  for other in ("relu", "softplus", "gelu"):
    if other in mlp and "squareplus" in mlp:
      diffs = np.subtract(mlp["squareplus"]["test_accuracy_seeds"], mlp[other]["test_accuracy_seeds"])
      out.append(C.claim("same_accuracy", "8", "SquarePlus in place of another activation trains as well "
                         "(within 1 point) at equal steps", dataset=f"MLP, vs {other}", kind="close", margin=0.01,
                         metric="test accuracy difference, paired by seed", value=float(diffs.mean()),
                         interval=C.seed_interval(diffs), detail=f"{len(diffs)} seeds, {config.mlp.dataset}, "
                         f"{config.mlp.num_steps} steps"))
  return C.with_summaries(out)
