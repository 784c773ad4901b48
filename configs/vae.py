"""Note 6 (kexue 8791): a VAE as an importance-sampling estimator of log p(x).

VAE (k=1) vs IWAE (k=5, 50) with 1 and 2 stochastic layers (IWAE paper architectures,
tanh MLPs), trained the same number of steps on dynamically binarised images; then
on a fixed binarisation of test images: the ELBO, the bounds IWAE_k, and the k=5,000
estimate of log p(x) with its standard error. Results: docs/results/vae.md.

  python -m experiments.run --config configs/vae.py            # Fashion-MNIST (~30 min, 2 cores)
  python -m experiments.run --config configs/vae.py:digits     # scikit-learn digits, 8x8 (minutes)
  python -m experiments.run --config configs/vae.py:smoke      # seconds
  python -m experiments.run --config configs/vae.py --config.data.name=tfds/fashion_mnist
  python -m experiments.sweep --config configs/vae.py:digits --workdir runs/sweep_vae   # training k x seed
"""

import ml_collections

from lmsys import config as config_lib
from lmsys.launch import sweep

VARIANTS = dict(smoke=False, digits=False, steps=0)


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, **VARIANTS)
  c = config_lib.experiment_config("vae")

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"  # or tfds/fashion_mnist where prepared
  c.data.data_dir = ""           # "" = the loader's default (or $LMSYS_DATA_DIR)
  c.data.pixel_scale = 1.0       # pixels / pixel_scale must lie in [0, 1]
  c.data.binarize_seed = 0       # the one fixed binarisation of the test images

  c.model = ml_collections.ConfigDict()
  c.model.num_layers = (1, 2)    # stochastic layers: 784-200-200-50 / 784-200-200-100-100-100-50
  c.model.train_ks = (1, 5, 50)  # k=1: VAE; k>1: IWAE

  # Adam as in the IWAE paper (beta2=0.999, eps=1e-4), lr 1e-3 cosine-decayed.
  c.train = config_lib.train_defaults(
      num_steps=2000, batch_size=100, log_every=100, eval_every=500, checkpoint_every=1000)
  c.optimizer = config_lib.optimizer_defaults(name="adam", learning_rate=1e-3, schedule="cosine")
  c.optimizer.kwargs.eps = 1e-4

  c.eval = ml_collections.ConfigDict()
  c.eval.test_size = 1000          # test images for the final estimates (a fixed random subset)
  c.eval.num_samples = 5000        # importance samples for log p(x)
  c.eval.chunk_size = 500          # samples per scan step: memory is one chunk's
  c.eval.batch_size = 25           # images per compiled call
  c.eval.bound_ks = (1, 5, 50, 500)  # IWAE_k bounds from the same samples (must divide chunk_size)
  c.eval.during_train_images = 200  # cheap monitoring during training
  c.eval.during_train_samples = 50

  if variants.digits:
    c.data.name = "digits"
    c.data.pixel_scale = 16.0
    c.train.num_steps, c.train.batch_size = 3000, 50
    c.eval.test_size = 450  # the whole digits test split
    c.eval.batch_size = 50
  if variants.smoke:
    c.data.name = "digits"
    c.data.pixel_scale = 16.0
    c.model.num_layers, c.model.train_ks = (1,), (5,)
    c.train.num_steps, c.train.batch_size = 20, 16
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 10, 20, 20
    c.eval.test_size, c.eval.num_samples, c.eval.chunk_size = 20, 100, 50
    c.eval.batch_size, c.eval.bound_ks = 10, (1, 5, 50)
    c.eval.during_train_images, c.eval.during_train_samples = 10, 10
  if variants.steps:  # :steps=N overrides the training length of any variant
    c.train.num_steps = variants.steps
  return c


def get_sweep(arg=None):
  """The training k scanned one model per trial (k=1: the VAE), over seeds for error bars."""
  if config_lib.parse_arg(arg, **VARIANTS).smoke:
    return sweep.product({"model.train_ks": [(1,), (5,)], "seed": [0]})
  return sweep.product({"model.train_ks": [(1,), (5,), (50,)], "seed": [0, 1, 2]})
