"""Transformer layers with the attention kind taken from config (notes 2, 3).

Pre-LN layers built on `lmsys.attention.attend`, so every kind (softmax,
linear, favor, taylor, limit) drops into any model by name:

    layer = EncoderLayer(num_heads=12, head_dim=64, attention="favor",
                         attention_params={"num_features": 256})

- `MultiHeadAttention`: self- or cross-attention (separate q and kv inputs),
  causal flag, key padding mask [B, Lk] (True = real token).
- `EncoderLayer`: self-attention + FFN; `DecoderLayer`: causal self-attention,
  optional cross-attention over an encoder output, FFN.
- `Embedder`: token + positional embeddings (learned or sinusoidal).
- `Encoder`, `Decoder`: stacks of layers; `CausalLM`: decoder-only language model.

FAVOR+ draws its random projection from the 'attention' rng stream when the
caller passes one (a fresh draw each training step) and from a fixed key
otherwise, so evaluation is deterministic. Dropout (rate `dropout_rate`, off
when `deterministic`) is applied to each sub-layer's output and the
embeddings; there is no dropout on attention weights, which the linear kinds
never form.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmsys import activations
from lmsys import attention as attention_lib


class MultiHeadAttention(nn.Module):
  """Projections to h heads of size head_dim, attention of a named kind, output projection."""
  num_heads: int
  head_dim: int
  attention: str = "softmax"
  attention_params: Any = None      # dict of the kind's keyword arguments
  causal: bool = False
  out_features: int | None = None   # default: the query input's width
  seed: int = 0                     # FAVOR+'s fixed draw when no 'attention' rng is given

  @nn.compact
  def __call__(self, inputs_q, inputs_kv=None, mask=None):
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    dense = lambda name: nn.DenseGeneral((self.num_heads, self.head_dim), name=name)
    q, k, v = dense("query")(inputs_q), dense("key")(inputs_kv), dense("value")(inputs_kv)
    self.sow("intermediates", "qk", (q, k))  # for analysis only (mutable=["intermediates"])
    rng = None
    if self.attention == "favor":
      rng = (self.make_rng("attention") if self.has_rng("attention")
             else jax.random.fold_in(jax.random.PRNGKey(self.seed), 0))
    out = attention_lib.attend(q, k, v, kind=self.attention, causal=self.causal, mask=mask,
                               rng=rng, **dict(self.attention_params or {}))
    return nn.DenseGeneral(self.out_features or inputs_q.shape[-1], axis=(-2, -1),
                           name="out")(out)


class FeedForward(nn.Module):
  """Dense(ratio * width) -> activation by name -> Dense(width)."""
  ffn_ratio: int = 4
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = activations.get(self.activation)(nn.Dense(self.ffn_ratio * width, name="wi")(x))
    return nn.Dense(width, name="wo")(x)


class EncoderLayer(nn.Module):
  """Pre-LN: x + Drop(MHA(LN x)), then x + Drop(FFN(LN x)). causal=True makes it GPT-style."""
  num_heads: int
  head_dim: int
  attention: str = "softmax"
  attention_params: Any = None
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0
  causal: bool = False
  seed: int = 0

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
    y = MultiHeadAttention(self.num_heads, self.head_dim, self.attention, self.attention_params,
                           causal=self.causal, seed=self.seed, name="self_attention")(
                               nn.LayerNorm(name="ln_attention")(x), mask=mask)
    x = x + drop(y)
    y = FeedForward(self.ffn_ratio, self.activation, name="ffn")(nn.LayerNorm(name="ln_ffn")(x))
    return x + drop(y)


class DecoderLayer(nn.Module):
  """Pre-LN causal self-attention, cross-attention (if an encoder output is given), FFN."""
  num_heads: int
  head_dim: int
  attention: str = "softmax"
  attention_params: Any = None
  cross_attention: str | None = None   # kind for cross-attention; default: `attention`
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0
  seed: int = 0

  @nn.compact
  def __call__(self, x, encoded=None, mask=None, encoded_mask=None, deterministic=True):
    drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
    y = MultiHeadAttention(self.num_heads, self.head_dim, self.attention, self.attention_params,
                           causal=True, seed=self.seed, name="self_attention")(
                               nn.LayerNorm(name="ln_self")(x), mask=mask)
    x = x + drop(y)
    if encoded is not None:
      y = MultiHeadAttention(self.num_heads, self.head_dim,
                             self.cross_attention or self.attention, self.attention_params,
                             causal=False, seed=self.seed + 1, name="cross_attention")(
                                 nn.LayerNorm(name="ln_cross")(x), encoded, mask=encoded_mask)
      x = x + drop(y)
    y = FeedForward(self.ffn_ratio, self.activation, name="ffn")(nn.LayerNorm(name="ln_ffn")(x))
    return x + drop(y)


def sinusoidal_positions(length: int, width: int) -> np.ndarray:
  """The fixed sin/cos table of Vaswani et al. [length, width]."""
  position = np.arange(length)[:, None]
  rates = np.exp(-np.log(10000.0) * np.arange(0, width, 2) / width)
  table = np.zeros((length, width), np.float32)
  table[:, 0::2] = np.sin(position * rates)
  table[:, 1::2] = np.cos(position * rates)[:, : width // 2]
  return table


class Embedder(nn.Module):
  """Token embedding + positions ('learned' or 'sinusoidal'); `attend` gives tied logits."""
  vocab_size: int
  width: int
  max_length: int
  positions: str = "learned"

  def setup(self):
    self.tokens = nn.Embed(self.vocab_size, self.width,
                           embedding_init=nn.initializers.normal(0.02))
    if self.positions == "learned":
      self.position_table = self.param("positions", nn.initializers.normal(0.02),
                                       (self.max_length, self.width))
    elif self.positions == "sinusoidal":
      self.position_table = jnp.asarray(sinusoidal_positions(self.max_length, self.width))
    else:
      raise ValueError(f"unknown positions {self.positions!r} (known: learned, sinusoidal)")

  def __call__(self, ids):
    if ids.shape[1] > self.max_length:
      raise ValueError(f"sequence length {ids.shape[1]} > max_length {self.max_length}")
    return self.tokens(ids) + self.position_table[None, : ids.shape[1]]

  def attend(self, x):
    return self.tokens.attend(x)


class Encoder(nn.Module):
  """A stack of EncoderLayers and a final LayerNorm over given embeddings [B, L, W]."""
  num_layers: int
  num_heads: int
  head_dim: int
  attention: str = "softmax"
  attention_params: Any = None
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0
  causal: bool = False

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.head_dim, self.attention, self.attention_params,
                       self.ffn_ratio, self.activation, self.dropout_rate, self.causal,
                       seed=i, name=f"layer_{i}")(x, mask=mask, deterministic=deterministic)
    return nn.LayerNorm(name="ln_final")(x)


class Decoder(nn.Module):
  """A stack of DecoderLayers (cross-attending to `encoded` if given) and a final LayerNorm."""
  num_layers: int
  num_heads: int
  head_dim: int
  attention: str = "softmax"
  attention_params: Any = None
  cross_attention: str | None = None
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, encoded=None, mask=None, encoded_mask=None, deterministic=True):
    for i in range(self.num_layers):
      x = DecoderLayer(self.num_heads, self.head_dim, self.attention, self.attention_params,
                       self.cross_attention, self.ffn_ratio, self.activation, self.dropout_rate,
                       seed=2 * i, name=f"layer_{i}")(
                           x, encoded, mask=mask, encoded_mask=encoded_mask,
                           deterministic=deterministic)
    return nn.LayerNorm(name="ln_final")(x)


class CausalLM(nn.Module):
  """Decoder-only language model: embed -> N causal layers -> logits (tied to the embedding)."""
  vocab_size: int
  max_length: int
  num_layers: int = 2
  num_heads: int = 4
  head_dim: int = 32
  attention: str = "softmax"
  attention_params: Any = None
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0
  positions: str = "learned"

  @nn.compact
  def __call__(self, ids, mask=None, deterministic=True):
    embedder = Embedder(self.vocab_size, self.num_heads * self.head_dim, self.max_length,
                        self.positions, name="embed")
    x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(embedder(ids))
    x = Encoder(self.num_layers, self.num_heads, self.head_dim, self.attention,
                self.attention_params, self.ffn_ratio, self.activation, self.dropout_rate,
                causal=True, name="decoder")(x, mask=mask, deterministic=deterministic)
    return embedder.attend(x)
