"""Transformer layers with the attention kind taken from config (notes 2, 3, 5, 7).

Pre-LN layers built on `lmsys.nn.attention.attend`, so every kind (softmax,
linear, favor, taylor, limit) drops into any model by name. The fields every
layer shares live in one frozen `TransformerConfig` (as in flax's lm1b
example), passed whole:

    cfg = TransformerConfig(num_layers=12, num_heads=12, head_dim=64, attention="favor",
                            attention_params={"num_features": 256}, dtype=jnp.bfloat16)
    layer = EncoderLayer(cfg)

- `MultiHeadAttention`: self- or cross-attention (separate q and kv inputs),
  causal flag, key padding mask [B, Lk] (True = real token).
- `EncoderLayer`: self-attention + FFN; `DecoderLayer`: causal self-attention,
  optional cross-attention over an encoder output, FFN.
- `Embedder`: token + positional embeddings (learned or sinusoidal).
- `Encoder`, `Decoder`: stacks of layers; `CausalLM`: decoder-only language model.

`dtype` is the compute dtype (bfloat16 on GPU/TPU): activations and matmuls
run in it while parameters (and so the optimizer state) stay float32, and
logits come back in float32 for the loss. `remat=True` recomputes each
layer's activations in the backward pass instead of storing them
(`nn.remat`), trading compute for memory on long sequences.

FAVOR+ draws its random projection from the 'attention' rng stream when the
caller passes one (a fresh draw each training step) and from a fixed key
otherwise, so evaluation is deterministic. Dropout (rate `dropout_rate`, off
when `deterministic`) is applied to each sub-layer's output and the
embeddings; there is no dropout on attention weights, which the linear kinds
never form.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmsys.nn import activations
from lmsys.nn import attention as attention_lib


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The hyper-parameters every layer of a Transformer shares (hashable, so jit-static)."""
  num_layers: int = 2
  num_heads: int = 4
  head_dim: int = 32
  attention: str = "softmax"
  attention_params: Any = ()        # the kind's keyword arguments: a dict, stored as sorted items
  cross_attention: str | None = None  # kind for cross-attention; default: `attention`
  ffn_ratio: int = 4
  activation: str = "gelu"
  dropout_rate: float = 0.0
  positions: str = "learned"        # or "sinusoidal"
  dtype: Any = jnp.float32          # compute dtype; parameters stay float32
  remat: bool = False               # recompute layer activations in the backward pass
  kernel_init_std: float | None = None  # dense kernels ~ N(0, std^2) (BERT: 0.02); None: lecun_normal

  def __post_init__(self):
    params = self.attention_params
    if isinstance(params, dict) or hasattr(params, "items"):
      object.__setattr__(self, "attention_params", tuple(sorted(dict(params).items())))
    elif params is None:
      object.__setattr__(self, "attention_params", ())
    if isinstance(self.dtype, str):
      object.__setattr__(self, "dtype", jnp.dtype(self.dtype))

  @property
  def width(self) -> int:
    return self.num_heads * self.head_dim

  @property
  def attention_kwargs(self) -> dict:
    return dict(self.attention_params)

  def replace(self, **changes) -> TransformerConfig:
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_config(cls, model_config, **overrides) -> TransformerConfig:
    """From a config section (ConfigDict or dict) holding some of the fields; others default."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(model_config).items() if k in names}
    if hasattr(values.get("attention_params"), "to_dict"):
      values["attention_params"] = values["attention_params"].to_dict()
    return cls(**{**values, **overrides})


def _dense(features, cfg, name, axis=-1):
  init = (nn.linear.default_kernel_init if cfg.kernel_init_std is None
          else nn.initializers.normal(cfg.kernel_init_std))
  return nn.DenseGeneral(features, axis=axis, dtype=cfg.dtype, param_dtype=jnp.float32,
                         kernel_init=init, name=name)


class MultiHeadAttention(nn.Module):
  """Projections to h heads of size head_dim, attention of a named kind, output projection.

  decode=True (incremental decoding, one position per call) keeps a cache in
  the 'cache' collection. Self-attention appends this step's key and value at
  `cache_index` and attends to the positions written so far; cross-attention
  projects the encoder output once (first call) and reuses it. A call with the
  full-length input and no cache yet only creates it (flax lm1b's pattern).
  """
  config: TransformerConfig
  causal: bool = False
  kind: str | None = None           # default: config.attention (cross-attention may differ)
  out_features: int | None = None   # default: the query input's width
  seed: int = 0                     # FAVOR+'s fixed draw when no 'attention' rng is given

  @nn.compact
  def __call__(self, inputs_q, inputs_kv=None, mask=None, decode=False):
    cfg = self.config
    kind = self.kind or cfg.attention
    cross = inputs_kv is not None
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    heads = (cfg.num_heads, cfg.head_dim)
    q = _dense(heads, cfg, "query")(inputs_q)
    key_proj, value_proj = _dense(heads, cfg, "key"), _dense(heads, cfg, "value")
    causal = self.causal
    if decode and cross:
      k, v = self._cached_cross(key_proj, value_proj, inputs_kv)
    elif decode:
      k, v, visible = self._cached_self(key_proj(inputs_kv), value_proj(inputs_kv))
      if visible is not None:  # one step: every key written so far is in the past
        mask, causal = visible, False
    else:
      k, v = key_proj(inputs_kv), value_proj(inputs_kv)
    self.sow("intermediates", "qk", (q, k))  # for analysis only (mutable=["intermediates"])
    rng = None
    if kind == "favor":
      rng = (self.make_rng("attention") if self.has_rng("attention")
             else jax.random.fold_in(jax.random.key(self.seed), 0))
    out = attention_lib.attend(q, k, v, kind=kind, causal=causal, mask=mask, rng=rng,
                               **cfg.attention_kwargs)
    return _dense(self.out_features or inputs_q.shape[-1], cfg, "out", axis=(-2, -1))(out)

  def _cached_self(self, k, v):
    """(keys, values, visible-key mask or None) with this step written into the cache."""
    initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if not initialized:  # the cache-creating call: plain causal attention over the input
      return k, v, None
    if k.shape[1] != 1:
      raise ValueError(f"decode=True takes one position per call, got {k.shape[1]}")
    i = index.value
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, k, (0, i, 0, 0))
    cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, v, (0, i, 0, 0))
    index.value = i + 1
    length = cached_key.value.shape[1]
    visible = jnp.broadcast_to(jnp.arange(length) <= i, (k.shape[0], length))
    return cached_key.value, cached_value.value, visible

  def _cached_cross(self, key_proj, value_proj, encoded):
    initialized = self.has_variable("cache", "cross_key")
    if initialized:  # projected once, when the cache was created
      return self.get_variable("cache", "cross_key"), self.get_variable("cache", "cross_value")
    k, v = key_proj(encoded), value_proj(encoded)
    self.put_variable("cache", "cross_key", k)
    self.put_variable("cache", "cross_value", v)
    return k, v


class FeedForward(nn.Module):
  """Dense(ratio * width) -> activation by name -> Dense(width)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    width = x.shape[-1]
    x = activations.get(cfg.activation)(_dense(cfg.ffn_ratio * width, cfg, "wi")(x))
    return _dense(width, cfg, "wo")(x)


def _layer_norm(cfg, name):
  return nn.LayerNorm(dtype=cfg.dtype, param_dtype=jnp.float32, name=name)


class EncoderLayer(nn.Module):
  """Pre-LN: x + Drop(MHA(LN x)), then x + Drop(FFN(LN x)). causal=True makes it GPT-style."""
  config: TransformerConfig
  causal: bool = False
  seed: int = 0

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    cfg = self.config
    drop = nn.Dropout(cfg.dropout_rate, deterministic=deterministic)
    y = MultiHeadAttention(cfg, causal=self.causal, seed=self.seed, name="self_attention")(
        _layer_norm(cfg, "ln_attention")(x), mask=mask)
    x = x + drop(y)
    y = FeedForward(cfg, name="ffn")(_layer_norm(cfg, "ln_ffn")(x))
    return x + drop(y)


class DecoderLayer(nn.Module):
  """Pre-LN causal self-attention, cross-attention (if an encoder output is given), FFN."""
  config: TransformerConfig
  seed: int = 0

  @nn.compact
  def __call__(self, x, encoded=None, mask=None, encoded_mask=None, deterministic=True, decode=False):
    cfg = self.config
    drop = nn.Dropout(cfg.dropout_rate, deterministic=deterministic)
    y = MultiHeadAttention(cfg, causal=True, seed=self.seed, name="self_attention")(
        _layer_norm(cfg, "ln_self")(x), mask=mask, decode=decode)
    x = x + drop(y)
    if encoded is not None:
      y = MultiHeadAttention(cfg, causal=False, kind=cfg.cross_attention or cfg.attention,
                             seed=self.seed + 1, name="cross_attention")(
                                 _layer_norm(cfg, "ln_cross")(x), encoded, mask=encoded_mask,
                                 decode=decode)
      x = x + drop(y)
    y = FeedForward(cfg, name="ffn")(_layer_norm(cfg, "ln_ffn")(x))
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
  dtype: Any = jnp.float32

  def setup(self):
    self.tokens = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32,
                           embedding_init=nn.initializers.normal(0.02))
    if self.positions == "learned":
      self.position_table = self.param("positions", nn.initializers.normal(0.02),
                                       (self.max_length, self.width))
    elif self.positions == "sinusoidal":
      self.position_table = jnp.asarray(sinusoidal_positions(self.max_length, self.width))
    else:
      raise ValueError(f"unknown positions {self.positions!r} (known: learned, sinusoidal)")

  def __call__(self, ids, offset=0):
    """Embeddings of ids [B, L] at positions offset .. offset + L - 1 (offset may be traced)."""
    if ids.shape[1] > self.max_length:
      raise ValueError(f"sequence length {ids.shape[1]} > max_length {self.max_length}")
    table = jax.lax.dynamic_slice_in_dim(self.position_table, offset, ids.shape[1], axis=0)
    return self.tokens(ids) + table[None].astype(self.dtype)

  def attend(self, x):
    return self.tokens.attend(x)


def _maybe_remat(layer_class, cfg, static_argnums):
  # static_argnums count the module itself as argument 0, so `deterministic`
  # (a Python bool that picks the dropout branch) stays static under remat.
  return nn.remat(layer_class, static_argnums=static_argnums) if cfg.remat else layer_class


class Encoder(nn.Module):
  """A stack of EncoderLayers and a final LayerNorm over given embeddings [B, L, W]."""
  config: TransformerConfig
  causal: bool = False

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    cfg = self.config
    layer_class = _maybe_remat(EncoderLayer, cfg, static_argnums=(3,))
    for i in range(cfg.num_layers):
      x = layer_class(cfg, causal=self.causal, seed=i, name=f"layer_{i}")(x, mask, deterministic)
    return _layer_norm(cfg, "ln_final")(x)


class Decoder(nn.Module):
  """A stack of DecoderLayers (cross-attending to `encoded` if given) and a final LayerNorm."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x, encoded=None, mask=None, encoded_mask=None, deterministic=True, decode=False):
    cfg = self.config
    layer_class = _maybe_remat(DecoderLayer, cfg, static_argnums=(5, 6))
    for i in range(cfg.num_layers):
      x = layer_class(cfg, seed=2 * i, name=f"layer_{i}")(x, encoded, mask, encoded_mask, deterministic,
                                                          decode)
    return _layer_norm(cfg, "ln_final")(x)


class CausalLM(nn.Module):
  """Decoder-only language model: embed -> N causal layers -> float32 logits (tied embedding)."""
  config: TransformerConfig
  vocab_size: int
  max_length: int

  @nn.compact
  def __call__(self, ids, mask=None, deterministic=True):
    cfg = self.config
    embedder = Embedder(self.vocab_size, cfg.width, self.max_length, cfg.positions, cfg.dtype,
                        name="embed")
    x = nn.Dropout(cfg.dropout_rate, deterministic=deterministic)(embedder(ids))
    x = Encoder(cfg, causal=True, name="decoder")(x, mask=mask, deterministic=deterministic)
    return embedder.attend(x).astype(jnp.float32)


class Seq2Seq(nn.Module):
  """Encoder-decoder Transformer with one shared (tied) token embedding (note 7).

      logits = model.apply(variables, source, target_in)          # teacher forcing
      encoded = model.apply(variables, source, method=Seq2Seq.encode)
      logits, cache = model.apply({**variables, "cache": cache}, token, encoded, source_mask,
                                  decode=True, position=t, method=Seq2Seq.decode, mutable=["cache"])

  Token id 0 is padding: the source mask is `source != 0`. Incremental
  decoding (decode=True) feeds one target position per call; the cache is
  created by `init_cache`, then reordered by the beam search with
  `lmsys.nn.decoding.reorder_cache` (every cache array has the batch first, except the scalar
  step counters, which all rows share).
  """
  config: TransformerConfig
  vocab_size: int
  max_source_length: int
  max_target_length: int

  def setup(self):
    cfg = self.config
    self.embedder = Embedder(self.vocab_size, cfg.width, max(self.max_source_length, self.max_target_length),
                             cfg.positions, cfg.dtype, name="embed")
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.encoder = Encoder(cfg, name="encoder")
    self.decoder = Decoder(cfg, name="decoder")

  def encode(self, source, deterministic=True):
    x = self.dropout(self.embedder(source), deterministic=deterministic)
    return self.encoder(x, source != 0, deterministic)

  def decode(self, target_in, encoded, source_mask, deterministic=True, decode=False, position=0):
    """Logits [B, Lt, V] (float32) of the next tokens.

    decode=True: one step with the cache, `target_in` [B, 1] at target position `position`.
    """
    x = self.dropout(self.embedder(target_in, position), deterministic=deterministic)
    x = self.decoder(x, encoded, None, source_mask, deterministic, decode)
    return self.embedder.attend(x).astype(jnp.float32)

  def __call__(self, source, target_in, deterministic=True):
    encoded = self.encode(source, deterministic)
    return self.decode(target_in, encoded, source != 0, deterministic)


def init_cache(model: Seq2Seq, params, encoded, source_mask):
  """The decoding cache for a batch: zeros of the full target length, cross keys projected."""
  batch = encoded.shape[0]
  dummy = jnp.zeros((batch, model.max_target_length), jnp.int32)
  _, state = model.apply({"params": params}, dummy, encoded, source_mask, decode=True,
                         method=Seq2Seq.decode, mutable=["cache"])
  return state["cache"]

