"""VAE / IWAE models of the IWAE paper (Burda et al. 2015) for note 6 (kexue 8791).

The model returns log importance weights, one per (sample, image):
  log w = log q(x|z) + log q(z) - log p(z|x)
in the note's notation (q = generative model, p(z|x) = proposal/encoder). Everything
else -- the VAE (k=1) and IWAE (k>1) losses, and the k=5,000 estimate of log p(x) --
is a log-mean-exp of these weights (lmsys/tasks/density.py).

Architectures (tanh MLPs, diagonal-Gaussian latents, Bernoulli pixels):
  1 stochastic layer:  x-200-200-z1(50)              latent_sizes=(50,), hidden_sizes=((200, 200),)
  2 stochastic layers: x-200-200-z1(100)-100-100-z2(50)
                                       latent_sizes=(100, 50), hidden_sizes=((200, 200), (100, 100))
Stochastic layer i has an encoder (z_{i-1} -> z_i, z_0 = x) and a decoder
(z_i -> z_{i-1}) with the same hidden widths, mirrored, as in the paper.

Cost: with k samples per image, everything but the first encoder is
paid k times, and the decoder's last layer (200 x 784) is ~3/4 of the FLOPs. `__call__`
runs the first encoder once per image, takes log p(z|x) from the noise (no (z - mean)^2 /
var), uses a softplus ~1.4x cheaper than jax.nn.softplus, and, when samples x images
exceed `block_rows`, scans over blocks of samples so each block's [rows, 784] logits stay
in cache (memory then no longer grows with k either). On XLA:CPU each block's decoder
(three matmuls, tanh, softplus and the sum over pixels) then compiles into one fused
kernel; jax.nn.softplus's guards kept the logits and the softplus as separate passes over
memory. The draws are the same as those of the straightforward `reference_log_weights`,
which it equals to float tolerance (tests/tasks/test_density.py). `python scripts/bench.py iwae_log_px`
compares the k=5,000 estimate's speed with this machine's matmul rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)

ARCHITECTURES = {
    1: dict(latent_sizes=(50,), hidden_sizes=((200, 200),)),
    2: dict(latent_sizes=(100, 50), hidden_sizes=((200, 200), (100, 100))),
}


def gaussian_log_prob(z, mean, log_var):
  """Diagonal-Gaussian log density, summed over the last axis."""
  return -0.5 * jnp.sum(LOG_2PI + log_var + (z - mean) ** 2 * jnp.exp(-log_var), axis=-1)


def gaussian_log_prob_of_noise(eps, log_var):
  """gaussian_log_prob(mean + exp(log_var / 2) * eps, mean, log_var) from the noise itself."""
  return -0.5 * jnp.sum(LOG_2PI + log_var + eps ** 2, axis=-1)


def softplus(x):
  """log(1 + e^x) as max(x, 0) + log1p(e^-|x|): jax.nn.softplus's values and gradient to
  float tolerance, without logaddexp's inf/nan guards (~1.4x cheaper on CPU, where the
  softplus over the 784 logits of every sample is most of the non-matmul work)."""
  return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def bernoulli_log_prob(x, logits):
  """log Bern(x | sigmoid(logits)) summed over the last axis; x in {0, 1}.

  One elementwise pass over the logits (x * logits - softplus(logits), then the sum), which
  XLA fuses with the matmul that produces them.
  """
  return jnp.sum(x * logits - softplus(logits), axis=-1)


class TanhMLP(nn.Module):
  """tanh hidden layers, then one linear output of width `out` (or two heads of width `out`)."""
  hidden: Sequence[int]
  out: int
  two_heads: bool = False

  @nn.compact
  def __call__(self, h):
    for width in self.hidden:
      h = jnp.tanh(nn.Dense(width)(h))
    if self.two_heads:  # mean and log-variance of a diagonal Gaussian
      return nn.Dense(self.out, name="mean")(h), nn.Dense(self.out, name="log_var")(h)
    return nn.Dense(self.out, name="logits")(h)


class VAE(nn.Module):
  """A VAE with len(latent_sizes) stochastic layers; __call__ gives log weights [S, B]."""
  input_size: int
  latent_sizes: Sequence[int] = (50,)
  hidden_sizes: Sequence[Sequence[int]] = ((200, 200),)
  block_rows: int | None = 4096  # rows (samples x images) per block; None: never block

  def setup(self):
    if len(self.latent_sizes) != len(self.hidden_sizes):
      raise ValueError(f"latent_sizes {self.latent_sizes} and hidden_sizes {self.hidden_sizes} "
                       "must have one entry per stochastic layer")
    below = [self.input_size, *self.latent_sizes[:-1]]
    self.encoders = [TanhMLP(tuple(h), z, two_heads=True, name=f"encoder_{i}")
                     for i, (h, z) in enumerate(zip(self.hidden_sizes, self.latent_sizes))]
    self.decoders = [TanhMLP(tuple(reversed(h)), out, two_heads=i > 0, name=f"decoder_{i}")
                     for i, (h, out) in enumerate(zip(self.hidden_sizes, below))]

  def __call__(self, x, rng, num_samples: int = 1):
    """log q(x, z_s) - log p(z_s | x) for s < num_samples: [num_samples, B].

    x: [B, input_size] binary pixels. The first encoder runs once per image; its
    Gaussian is sampled num_samples times (reparameterised, so gradients flow).
    Equal to `reference_log_weights` (same draws) to float tolerance, and faster: see
    the module docstring. Samples are processed in blocks of at most `block_rows`
    rows (samples x images), by a scan, when there are more rows than that.
    """
    x = x.astype(jnp.float32)
    mean, log_var = self.encoders[0](x)  # once per image
    noise = self.draw_noise(rng, num_samples, x.shape[0])
    per_block = samples_per_block(num_samples, x.shape[0], self.block_rows)
    if per_block == num_samples:
      return self.log_weights_from_noise(x, mean, log_var, noise)
    blocks = [n.reshape(num_samples // per_block, per_block, *n.shape[1:]) for n in noise]
    scan = nn.scan(lambda module, carry, block: (carry, module.log_weights_from_noise(
        x, mean, log_var, block)), variable_broadcast="params", split_rngs={"params": False})
    _, log_w = scan(self, None, blocks)
    return log_w.reshape(num_samples, x.shape[0])

  def draw_noise(self, rng, num_samples: int, batch: int):
    """The standard-normal draws of all samples: one [num_samples, B, z_i] per stochastic layer."""
    rngs = jax.random.split(rng, len(self.latent_sizes))
    return [jax.random.normal(r, (num_samples, batch, size), jnp.float32)
            for r, size in zip(rngs, self.latent_sizes)]

  def log_weights_from_noise(self, x, mean, log_var, noise):
    """log w [S, B] of the samples whose noise is `noise` (from draw_noise, S samples).

    mean, log_var: [B, z_1], the first encoder's output (per image, not per sample).
    """
    zs, log_proposal = [], 0.0
    for i, eps in enumerate(noise):
      if i > 0:
        mean, log_var = self.encoders[i](zs[-1])
      zs.append(mean + jnp.exp(0.5 * log_var) * eps)
      log_proposal += gaussian_log_prob_of_noise(eps, log_var)
    log_joint = -0.5 * jnp.sum(LOG_2PI + zs[-1] ** 2, axis=-1)  # standard-normal prior
    for i in reversed(range(1, len(self.decoders))):
      mean, log_var = self.decoders[i](zs[i])
      log_joint += gaussian_log_prob(zs[i - 1], mean, log_var)
    log_joint += bernoulli_log_prob(x, self.decoders[0](zs[0]))
    return log_joint - log_proposal

  def reference_log_weights(self, x, rng, num_samples: int = 1):
    """The straightforward computation of `__call__` (the same draws): every density
    from its formula, all samples at once, jax.nn.softplus. For tests and benchmarks."""
    noise = self.draw_noise(rng, num_samples, x.shape[0])
    h = x.astype(jnp.float32)
    zs, log_proposal = [], 0.0
    for encoder, eps in zip(self.encoders, noise):
      mean, log_var = encoder(h)
      z = mean + jnp.exp(0.5 * log_var) * eps
      log_proposal += gaussian_log_prob(z, mean, log_var)
      zs.append(z)
      h = z
    log_joint = gaussian_log_prob(zs[-1], 0.0, jnp.zeros(()))
    for i in reversed(range(len(self.decoders))):
      if i > 0:
        mean, log_var = self.decoders[i](zs[i])
        log_joint += gaussian_log_prob(zs[i - 1], mean, log_var)
      else:
        logits = self.decoders[0](zs[0])
        log_joint += jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
    return log_joint - log_proposal

  def decode_mean(self, z_top):
    """Pixel probabilities of the generative model's ancestral pass from z_top (means at each layer)."""
    h = z_top
    for i in reversed(range(1, len(self.decoders))):
      h, _ = self.decoders[i](h)
    return jax.nn.sigmoid(self.decoders[0](h))


def samples_per_block(num_samples: int, batch: int, block_rows: int | None) -> int:
  """The most samples, dividing num_samples, whose block has at most block_rows rows (>= 1).

  The default 4,096 gives blocks of 3,125 rows at the k = 5,000 estimate's chunk of 500 samples
  x 25 images: on a 2-core CPU they ran ~10% faster than 625-row blocks (larger matmuls; the
  [rows, 784] logits, 10 MiB, still mostly in cache), while one 12,500-row block ran 1.7x slower
  (docs/performance.md, `iwae_log_px`).
  """
  if not block_rows or num_samples * batch <= block_rows:
    return num_samples
  return max(d for d in range(1, num_samples + 1)
             if num_samples % d == 0 and (d * batch <= block_rows or d == 1))


def make_model(num_layers: int, input_size: int, **kwargs) -> VAE:
  """The IWAE paper's architecture with `num_layers` stochastic layers (kwargs: e.g. block_rows)."""
  if num_layers not in ARCHITECTURES:
    raise ValueError(f"num_layers must be one of {sorted(ARCHITECTURES)}, got {num_layers}")
  return VAE(input_size=input_size, **ARCHITECTURES[num_layers], **kwargs)


def dynamic_binarize(rng, x):
  """A fresh Bernoulli(x) draw of each grey image (x in [0, 1]), as in the IWAE paper."""
  return jax.random.bernoulli(rng, x).astype(jnp.float32)
