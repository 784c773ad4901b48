"""VAE / IWAE models of the IWAE paper (Burda et al. 2015) for note 6 (kexue 8791).

The model returns log importance weights, one per (sample, image):
  log w = log q(x|z) + log q(z) - log p(z|x)
in the note's notation (q = generative model, p(z|x) = proposal/encoder). Everything
else -- the VAE (k=1) and IWAE (k>1) losses, and the k=5,000 estimate of log p(x) --
is a log-mean-exp of these weights (lmsys/iwae.py).

Architectures (tanh MLPs, diagonal-Gaussian latents, Bernoulli pixels):
  1 stochastic layer:  x-200-200-z1(50)              latent_sizes=(50,), hidden_sizes=((200, 200),)
  2 stochastic layers: x-200-200-z1(100)-100-100-z2(50)
                                       latent_sizes=(100, 50), hidden_sizes=((200, 200), (100, 100))
Stochastic layer i has an encoder (z_{i-1} -> z_i, z_0 = x) and a decoder
(z_i -> z_{i-1}) with the same hidden widths, mirrored, as in the paper.
"""

from __future__ import annotations

import math
from typing import Sequence

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


def bernoulli_log_prob(x, logits):
  """log Bern(x | sigmoid(logits)) summed over the last axis; x in {0, 1}."""
  return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


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
    """
    rngs = jax.random.split(rng, len(self.latent_sizes))
    h = x.astype(jnp.float32)
    zs, log_proposal = [], 0.0
    for i, encoder in enumerate(self.encoders):
      mean, log_var = encoder(h)
      if i == 0:
        shape = (num_samples, *mean.shape)
      else:
        shape = mean.shape
      z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(rngs[i], shape, mean.dtype)
      log_proposal += gaussian_log_prob(z, mean, log_var)
      zs.append(z)
      h = z
    # Generative model: standard-normal prior on the top layer, then down to x.
    log_joint = gaussian_log_prob(zs[-1], 0.0, jnp.zeros(()))
    for i in reversed(range(len(self.decoders))):
      if i > 0:
        mean, log_var = self.decoders[i](zs[i])
        log_joint += gaussian_log_prob(zs[i - 1], mean, log_var)
      else:
        log_joint += bernoulli_log_prob(x, self.decoders[0](zs[0]))
    return log_joint - log_proposal

  def decode_mean(self, z_top):
    """Pixel probabilities of the generative model's ancestral pass from z_top (means at each layer)."""
    h = z_top
    for i in reversed(range(1, len(self.decoders))):
      h, _ = self.decoders[i](h)
    return jax.nn.sigmoid(self.decoders[0](h))


def make_model(num_layers: int, input_size: int) -> VAE:
  """The IWAE paper's architecture with `num_layers` stochastic layers."""
  if num_layers not in ARCHITECTURES:
    raise ValueError(f"num_layers must be one of {sorted(ARCHITECTURES)}, got {num_layers}")
  return VAE(input_size=input_size, **ARCHITECTURES[num_layers])


def dynamic_binarize(rng, x):
  """A fresh Bernoulli(x) draw of each grey image (x in [0, 1]), as in the IWAE paper."""
  return jax.random.bernoulli(rng, x).astype(jnp.float32)
