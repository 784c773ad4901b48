"""BERT with its pre-training heads, parameter for parameter the original model (note 5).

NSP-BERT (kexue 8671; arXiv 2109.03564) scores a (prompt, text) pair by the
next-sentence head's P(IsNext), so the model must be the original BERT with
both heads, laid out so that real checkpoints load (`lmsys.models.hf_bert`):

    cfg = BertConfig.from_json("bert-base-chinese/config.json")   # Hugging Face field names
    mlm_logits, nsp_logits = BertForPreTraining(cfg).apply(params, ids, type_ids, mask)
    score = is_next_log_prob(nsp_logits)                           # log P(IsNext) [B]

The architecture is Devlin et al.'s, as Hugging Face's `BertForPreTraining`:
word + learned position + token-type embeddings, LayerNorm, dropout; post-LN
layers `x = LN(x + Drop(MHA(x)))`, `x = LN(x + Drop(W2 act(W1 x)))` with the
exact (erf) gelu; a pooler `tanh(W h_[CLS])` feeding the NSP head (2 logits,
index 0 = IsNext, Hugging Face's label convention); an MLM head
`LN(act(W h))` decoded by the word-embedding matrix (tied) plus an output bias.

The attention is `lmsys.models.transformer.MultiHeadAttention`, so the kind
(softmax, linear, favor, ...) comes from the config like everywhere in lmsys;
with "softmax" the forward pass is BERT's. BERT's dropout on the attention
probabilities is not applied: the fused softmax kernel and the linear kinds
never form those probabilities (inference is unaffected; training from scratch
loses that one regulariser, `attention_probs_dropout_prob` is read and kept for
the record only).

`dtype` is the compute dtype (bfloat16 on accelerators) while parameters stay
float32 and both logits come back float32; `remat=True` recomputes each
layer's activations in the backward pass.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmsys.config import ConfigError
from lmsys.models import transformer
from lmsys.nn import activations
from lmsys.nn import attention as attention_lib

# Hugging Face's `hidden_act` names -> lmsys.nn.activations names (lmsys names are accepted as well).
HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
                  "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "silu": "silu",
                  "swish": "silu", "tanh": "tanh"}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """BERT's hyper-parameters under Hugging Face's config.json names (hashable: jit-static)."""
  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1  # not applied (module docstring)
  dtype: Any = jnp.float32                   # compute dtype; params stay float32, logits float32
  remat: bool = False
  # Beyond the interface above (appended so positional use is unchanged):
  initializer_range: float = 0.02            # std of the normal init of every kernel and embedding
  attention: str = "softmax"                 # lmsys attention kind (lmsys.nn.attention.KINDS)
  attention_params: Any = ()                 # the kind's keyword arguments (dict -> sorted items)

  def __post_init__(self):
    params = self.attention_params
    if params is None:
      params = ()
    elif isinstance(params, dict) or hasattr(params, "items"):
      params = tuple(sorted(dict(params).items()))
    object.__setattr__(self, "attention_params", tuple(params))
    if isinstance(self.dtype, str):
      try:
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype))
      except TypeError:
        raise ConfigError(f"BertConfig.dtype: unknown dtype {self.dtype!r}") from None
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"BertConfig.{name}: expected a positive integer, got {value!r}")
    if self.hidden_size % self.num_attention_heads:
      raise ConfigError(f"BertConfig.hidden_size={self.hidden_size} is not a multiple of "
                        f"num_attention_heads={self.num_attention_heads}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ConfigError(f"BertConfig.{name}: expected a probability in [0, 1), got {value!r}")
    if not self.layer_norm_eps > 0:
      raise ConfigError(f"BertConfig.layer_norm_eps: expected > 0, got {self.layer_norm_eps!r}")
    if self.activation not in activations.ACTIVATIONS:
      raise ConfigError(f"BertConfig.hidden_act: unknown activation {self.hidden_act!r} (known: "
                        f"{', '.join(sorted(set(HF_ACTIVATIONS) | set(activations.ACTIVATIONS)))})")
    if self.attention not in attention_lib.KINDS:
      raise ConfigError(f"BertConfig.attention: unknown kind {self.attention!r} "
                        f"(known: {', '.join(attention_lib.KINDS)})")

  @property
  def activation(self) -> str:
    """The lmsys.nn.activations name of `hidden_act`."""
    return HF_ACTIVATIONS.get(self.hidden_act, self.hidden_act)

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  def transformer_config(self) -> transformer.TransformerConfig:
    """The attention's view of this config (heads, kind, dtype, BERT's init)."""
    return transformer.TransformerConfig(
        num_layers=self.num_hidden_layers, num_heads=self.num_attention_heads,
        head_dim=self.head_dim, attention=self.attention,
        attention_params=dict(self.attention_params), dtype=self.dtype,
        kernel_init_std=self.initializer_range)

  def replace(self, **changes) -> BertConfig:
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_dict(cls, d: dict, **overrides) -> BertConfig:
    """From a config.json dict (or a config section); keys that are not fields are ignored.

    Hugging Face keys that would change the model in a way this module does not
    implement are refused rather than ignored.
    """
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    position_type = d.get("position_embedding_type", "absolute")
    if position_type != "absolute":
      raise ConfigError(f"BertConfig: position_embedding_type={position_type!r} is not supported "
                        "(only 'absolute', the original BERT's)")
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                           "num_attention_heads", "intermediate_size")
               if n not in d and n not in overrides]
    if missing:
      raise ConfigError(f"BertConfig: missing key(s) {', '.join(missing)}")
    if hasattr(d.get("attention_params"), "to_dict"):
      d["attention_params"] = d["attention_params"].to_dict()
    return cls(**{**{k: v for k, v in d.items() if k in names}, **overrides})

  @classmethod
  def from_json(cls, path, **overrides) -> BertConfig:
    """From a Hugging Face config.json. Its `dtype`/`torch_dtype` (how the weights were stored)
    is not the compute dtype and is ignored: pass `dtype=` to choose one."""
    try:
      with open(path, encoding="utf-8") as f:
        d = json.load(f)
    except FileNotFoundError:
      raise ConfigError(f"BERT config not found: {path}") from None
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict):
      raise ConfigError(f"{path}: expected a JSON object")
    d.pop("dtype", None)
    d.pop("torch_dtype", None)
    try:
      return cls.from_dict(d, **overrides)
    except ConfigError as e:
      raise ConfigError(f"{path}: {e}") from None


def _normal_init(cfg):
  return nn.initializers.normal(cfg.initializer_range)


def _dense(features, cfg, name):
  return nn.Dense(features, dtype=cfg.dtype, param_dtype=jnp.float32, kernel_init=_normal_init(cfg),
                  name=name)


def _layer_norm(cfg, name):
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=jnp.float32,
                      name=name)


class BertEmbeddings(nn.Module):
  """LN(word + position + token type), then dropout; `attend` decodes with the word table."""
  config: BertConfig

  def setup(self):
    cfg = self.config
    embed = lambda n, name: nn.Embed(n, cfg.hidden_size, dtype=cfg.dtype, param_dtype=jnp.float32,
                                     embedding_init=_normal_init(cfg), name=name)
    self.word_embeddings = embed(cfg.vocab_size, "word_embeddings")
    self.position_embeddings = embed(cfg.max_position_embeddings, "position_embeddings")
    self.token_type_embeddings = embed(cfg.type_vocab_size, "token_type_embeddings")
    self.layer_norm = _layer_norm(cfg, "layer_norm")
    self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

  def __call__(self, input_ids, token_type_ids, deterministic=True, position_ids=None):
    """input_ids, token_type_ids: int [B, L]; position_ids: int [B, L] or [L] (None: 0 .. L - 1,
    as Hugging Face's BertEmbeddings). Position ids must lie below max_position_embeddings
    (they are traced values: not checked here)."""
    length = input_ids.shape[1]
    if length > self.config.max_position_embeddings:
      raise ConfigError(f"sequence length {length} > the model's max_position_embeddings "
                        f"{self.config.max_position_embeddings}")
    if position_ids is None:
      position_ids = jnp.arange(length)[None]
    x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
         + self.position_embeddings(jnp.asarray(position_ids)))
    return self.dropout(self.layer_norm(x), deterministic=deterministic)

  def attend(self, x):
    return self.word_embeddings.attend(x)


class BertLayer(nn.Module):
  """Post-LN: x = LN(x + Drop(MHA(x))); x = LN(x + Drop(W2 act(W1 x)))."""
  config: BertConfig
  seed: int = 0

  @nn.compact
  def __call__(self, x, mask, deterministic=True):
    cfg = self.config
    drop = nn.Dropout(cfg.hidden_dropout_prob, deterministic=deterministic)
    y = transformer.MultiHeadAttention(cfg.transformer_config(), seed=self.seed,
                                       name="attention")(x, mask=mask)
    x = _layer_norm(cfg, "attention_layer_norm")(x + drop(y))
    y = activations.get(cfg.activation)(_dense(cfg.intermediate_size, cfg, "intermediate")(x))
    y = _dense(cfg.hidden_size, cfg, "output")(y)
    return _layer_norm(cfg, "output_layer_norm")(x + drop(y))


class BertForPreTraining(nn.Module):
  """BERT + MLM head + NSP head: (mlm_logits, nsp_logits), both float32.

  input_ids, token_type_ids, attention_mask: int [B, L] (mask 1 = real token,
  0 = padding; None means no padding). position_ids: int [B, L] (optional; None
  means 0 .. L - 1, as Hugging Face's BertModel; NSP-BERT's ChID puts the candidate
  at the positions of the blank). mlm_positions [B, P] (optional): the MLM head
  runs at those positions only, giving [B, P, V] instead of [B, L, V]
  (pretraining scores only the masked positions, and V is large).
  nsp_logits[:, 0] is IsNext (Hugging Face's convention: label 0 = B follows A).
  """
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, *, deterministic=True,
               mlm_positions=None, position_ids=None):
    cfg = self.config
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    mask = None if attention_mask is None else attention_mask.astype(bool)
    embeddings = BertEmbeddings(cfg, name="embeddings")
    x = embeddings(input_ids, token_type_ids, deterministic, position_ids)
    # static_argnums counts the module as 0: `deterministic` (a Python bool) stays static.
    layer_class = nn.remat(BertLayer, static_argnums=(3,)) if cfg.remat else BertLayer
    for i in range(cfg.num_hidden_layers):
      x = layer_class(cfg, seed=i, name=f"layer_{i}")(x, mask, deterministic)

    pooled = jnp.tanh(_dense(cfg.hidden_size, cfg, "pooler")(x[:, 0]))
    nsp_logits = _dense(2, cfg, "nsp")(pooled).astype(jnp.float32)

    if mlm_positions is not None:
      x = jnp.take_along_axis(x, mlm_positions[..., None].astype(jnp.int32), axis=1)
    h = activations.get(cfg.activation)(_dense(cfg.hidden_size, cfg, "mlm_transform")(x))
    h = _layer_norm(cfg, "mlm_layer_norm")(h)
    bias = self.param("mlm_bias", nn.initializers.zeros, (cfg.vocab_size,), jnp.float32)
    mlm_logits = embeddings.attend(h).astype(jnp.float32) + bias
    return mlm_logits, nsp_logits


def is_next_log_prob(nsp_logits) -> jax.Array:
  """log P(IsNext) = log_softmax(nsp_logits)[..., 0]: NSP-BERT's score of a pair."""
  return jax.nn.log_softmax(jnp.asarray(nsp_logits, jnp.float32), axis=-1)[..., 0]


def init_params(config: BertConfig, rng=None) -> dict:
  """The float32 `{'params': ...}` tree of BertForPreTraining(config), randomly initialised."""
  return _jitted_init(config, jax.random.key(0) if rng is None else rng)


@functools.partial(jax.jit, static_argnums=0)  # compiled once per config
def _jitted_init(config, rng):
  ids = jnp.zeros((1, min(8, config.max_position_embeddings)), jnp.int32)
  return BertForPreTraining(config).init(rng, ids, ids, jnp.ones_like(ids))
