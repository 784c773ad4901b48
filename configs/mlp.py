"""Trainer demo: an MLP classifier on a bundled scikit-learn dataset.

Exercises the shared trainer end to end (sharded batches, checkpoints, resume,
eval, non-finite guard). The activation is a config choice, which note 8
(SquarePlus) uses to compare activations at equal steps.

  python -m experiments.run --config configs/mlp.py
  python -m experiments.run --config configs/mlp.py:smoke
  python -m experiments.run --config configs/mlp.py:fashion_mnist   # Debian dataset-fashion-mnist
  python -m experiments.run --config configs/mlp.py --config.model.activation=squareplus
"""

import ml_collections

from lmsys import trainer


def get_config(arg=None):
  variants = set((arg or "").split(",")) - {""}
  c = ml_collections.ConfigDict()
  c.experiment = "mlp"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.data_dir = ""  # "" = the loader's default (or $LMSYS_DATA_DIR)

  c.model = ml_collections.ConfigDict()
  c.model.hidden = (128, 128)
  c.model.activation = "relu"

  c.train = trainer.default_train_config(
      num_steps=2000, batch_size=64, log_every=50, eval_every=500, checkpoint_every=500)
  c.optimizer = trainer.default_optimizer_config(name="adam", learning_rate=1e-3)

  if "fashion_mnist" in variants:
    c.data.name = "fashion_mnist"
    c.model.hidden = (256, 256)
    c.train.num_steps, c.train.batch_size = 5000, 128
    c.train.eval_every = c.train.checkpoint_every = 1000
  if "smoke" in variants:
    c.train.num_steps, c.train.batch_size = 20, 16
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 5, 10, 10
    c.model.hidden = (32,)
  return c
