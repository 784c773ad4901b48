"""An MLP classifier: the shared trainer's demo model (configs/mlp.py)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from lmsys.nn import activations


class MLP(nn.Module):
  """Dense layers with a named activation, then a linear head (logits)."""
  hidden: Sequence[int]
  num_classes: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x):
    act = activations.get(self.activation)
    x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
    for width in self.hidden:
      x = act(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
