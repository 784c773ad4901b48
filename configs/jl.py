"""Note 4 (kexue 8679, 8706): the Johnson-Lindenstrauss lemma, measured.

Tail probabilities of the norm and orthogonality lemmas against their bounds; random
projection of N real vectors (Gaussian points, Fashion-MNIST images, FewCLUE tnews text
features) against 24 log N / eps^2, 16 log N / eps^2 and scikit-learn's bound; SimHash;
randomized SVD; and the smallest head size that fits random one-hot attention rows.

  python -m experiments.run --config configs/jl.py --workdir runs/jl          # a few minutes, 2 cores
  python -m experiments.run --config configs/jl.py:smoke --workdir /tmp/jl    # seconds

FewCLUE is read from data.data_dir or $LMSYS_DATA_DIR; its vectors are TF-IDF (char 1-2 gram)
+ SVD features of tnews's unlabeled sentences (lmsys.data.fewclue.fewclue_features).
"""

import ml_collections

from lmsys import config as config_lib


def get_config(arg=None):
  variants = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.experiment_config("jl")

  c.data = ml_collections.ConfigDict()
  c.data.data_dir = ""  # root holding fewclue/ (and fashion-mnist/); "" = $LMSYS_DATA_DIR, then defaults
  c.data.sets = ("gaussian", "fashion_mnist", "fewclue/tnews")
  c.data.gaussian_dim = 1024
  c.data.text = ml_collections.ConfigDict(dict(svd_dim=256, ngram_max=2))

  # Lemma tails: Monte-Carlo vs the exact tail vs the bound.
  c.tails = ml_collections.ConfigDict()
  c.tails.n = (16, 32, 64, 128, 256, 512, 1024)
  c.tails.eps = (0.1, 0.25, 0.5)
  c.tails.samples = 20000

  # (N, eps, trials): all N(N-1)/2 pairs, nested projections evaluated on grid_points dims in
  # (0, ceil(24 log N / eps^2)] plus the 16 log N / eps^2 and scikit-learn dimensions.
  c.projection = ml_collections.ConfigDict()
  c.projection.cases = ((100, 0.5, 20), (100, 0.25, 20), (1000, 0.5, 5), (1000, 0.25, 5),
                        (10000, 0.5, 2))
  c.projection.grid_points = 40
  c.projection.block = 512

  c.lsh = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist", points=5000, pairs=3000, bits=(8, 16, 32, 64, 128, 256, 512, 1024)))
  c.svd = ml_collections.ConfigDict(dict(
      dataset="fashion_mnist", points=10000, rank=20, sketch=(20, 25, 30, 40, 60, 100, 160),
      power_iters=(0, 1)))

  # Head size: Q, K in R^{L x d} free, rows normalised, logits = tau cos(q_i, k_j) with
  # tau = inverse_temperature_per_log_length * log L; target: key targets[i] ~ U{0..L-1} for
  # query i; success: mean attention weight on the target >= success_weight.
  c.head = ml_collections.ConfigDict(dict(
      lengths=(64, 128, 256, 512, 1024), inverse_temperature_per_log_length=2.0,
      success_weight=0.9, max_size=96, steps=500))
  c.optimizer = config_lib.optimizer_defaults(name="adam", learning_rate=0.05)

  if variants.smoke:
    c.data.sets = ("gaussian",)
    c.data.gaussian_dim = 64
    c.tails.update(n=(16, 64), eps=(0.25, 0.5), samples=2000)
    c.projection.cases = ((50, 0.5, 3),)
    c.projection.grid_points = 8
    c.lsh.update(dataset="gaussian", points=200, pairs=200, bits=(16, 64))
    c.svd.update(dataset="gaussian", points=300, rank=5, sketch=(5, 10), power_iters=(0,))
    c.head.update(lengths=(16,), max_size=8, steps=50)
  return c
