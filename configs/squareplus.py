"""Note 8 (kexue 8833; Barron 2021): SquarePlus (x + sqrt(x^2 + b)) / 2.

The note's constants computed in float64 (smallest b with squareplus >= softplus, the
minimax fit to softplus), activation speed as ratios to relu in one run, and the MLP of
configs/mlp.py trained on Fashion-MNIST once per activation at equal steps (plus the
char LM of configs/attention_approx_lm.py per FFN activation, where that config exists).

  python -m experiments.run --config configs/squareplus.py --workdir runs/squareplus
  python -m experiments.run --config configs/squareplus.py:smoke --workdir /tmp/squareplus
"""

import ml_collections

from lmsys import config as config_lib


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False, no_lm=False)
  c = config_lib.experiment_config("squareplus")

  c.speed = ml_collections.ConfigDict(dict(
      activations=("relu", "squareplus", "softplus", "gelu", "gelu_tanh"), size=1 << 24, repeats=10))

  # configs/mlp.py:<variant>, trained once per activation with these overrides.
  c.mlp = ml_collections.ConfigDict(dict(
      config="configs/mlp.py", variant="fashion_mnist", dataset="fashion_mnist", num_steps=2000,
      data_dir="",  # "" = the dataset's default (Fashion-MNIST: /usr/share/datasets/fashion-mnist)
      activations=("relu", "squareplus", "softplus", "gelu", "gelu_tanh"), seeds=(0, 1, 2)))

  # configs/attention_approx_lm.py:<variant> per FFN activation (model.activation), restricted to the
  # attention kinds and contexts named here; skipped, and said so in the results, if the
  # config or the key does not exist.
  c.attention_lm = ml_collections.ConfigDict(dict(
      config="configs/attention_approx_lm.py", variant="", num_steps=300, kinds=("softmax",), contexts=(64,),
      activations=("relu", "squareplus", "softplus", "gelu")))

  if variants.smoke:
    c.speed.update(size=1 << 16, repeats=2, activations=("relu", "squareplus"))
    c.mlp.update(variant="smoke", dataset="digits", num_steps=20, activations=("relu", "squareplus"), seeds=(0,))
    c.attention_lm.update(variant="smoke", num_steps=4, contexts=(16,), activations=("squareplus",))
  if variants.no_lm:
    c.attention_lm.activations = ()
  return c
