"""Trainer demo: an MLP classifier on a bundled scikit-learn dataset.

Exercises the shared trainer end to end (sharded batches, checkpoints, resume,
eval, non-finite guard). The activation is a config choice, which note 8
(SquarePlus) uses to compare activations at equal steps.

  python -m experiments.run --config configs/mlp.py
  python -m experiments.run --config configs/mlp.py:smoke
  python -m experiments.run --config configs/mlp.py:fashion_mnist   # Debian dataset-fashion-mnist
  python -m experiments.run --config configs/mlp.py --config.model.activation=squareplus
  python -m experiments.sweep --config configs/mlp.py --workdir runs/sweep_mlp --parallel 2   # get_sweep
  python -m experiments.run --config configs/mlp.py --config.data.name=tfds/NAME \
      --config.data.data_dir=TFDS_DIR --config.data.input=grain   # streamed from ArrayRecord files
"""

import ml_collections

from lmsys import config as config_lib
from lmsys.launch import sweep

VARIANTS = dict(smoke=False, fashion_mnist=False, steps=0)


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, **VARIANTS)
  c = config_lib.experiment_config("mlp")

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.data_dir = ""  # "" = $LMSYS_DATA_DIR if it holds the dataset, else the loader's default
  c.data.train_split = "train_few_all"  # FewCLUE split files <split>.json (e.g. test_public)
  c.data.test_split = "dev_few_all"
  # "memory": load the dataset as arrays; "grain": stream the training split of a prepared
  # TFDS dataset (data.name = "tfds/<name>", array_record) through grain (lmsys.data.grain_source).
  c.data.input = "memory"

  c.model = ml_collections.ConfigDict()
  c.model.hidden = (128, 128)
  c.model.activation = "relu"

  c.train = config_lib.train_defaults(
      num_steps=2000, batch_size=64, log_every=50, eval_every=500, checkpoint_every=500)
  c.optimizer = config_lib.optimizer_defaults(name="adam", learning_rate=1e-3)

  if variants.fashion_mnist:
    c.data.name = "fashion_mnist"
    c.model.hidden = (256, 256)
    c.train.num_steps, c.train.batch_size = 5000, 128
    c.train.eval_every = c.train.checkpoint_every = 1000
  if variants.smoke:
    c.train.num_steps, c.train.batch_size = 20, 16
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 5, 10, 10
    c.model.hidden = (32,)
  if variants.steps:  # :steps=N overrides the training length of any variant
    c.train.num_steps = variants.steps
  return c


def get_sweep(arg=None):
  """Note 8's comparison at equal steps: activation x seed (error bars over seeds)."""
  if config_lib.parse_arg(arg, **VARIANTS).smoke:
    return sweep.product({"model.activation": ["relu", "squareplus"], "seed": [0, 1]})
  return sweep.product({"model.activation": ["relu", "squareplus", "softplus", "gelu"], "seed": [0, 1, 2]})
