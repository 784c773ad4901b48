"""Activations by name: anywhere lmsys takes an activation, it takes one of these.

`squareplus` is note 8 (kexue 8833; Barron 2021): (x + sqrt(x^2 + b)) / 2,
the cheapest smooth ReLU (b = 0 gives ReLU exactly).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lmsys.config import ConfigError


def squareplus(x, b: float = 4.0):
  """(x + sqrt(x^2 + b)) / 2. b=4 matches softplus's curvature at 0 (JAX's default)."""
  return 0.5 * (x + jnp.sqrt(x * x + b))


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "softplus": jax.nn.softplus,
    "squareplus": squareplus,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
}


def get(name: str):
  if name not in ACTIVATIONS:
    raise ConfigError(f"unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})")
  return ACTIVATIONS[name]
