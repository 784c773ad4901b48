"""lmsys.models.transformer: layers take any attention kind; causal and padding hold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.models import transformer as T
from lmsys.nn import decoding

KINDS = [("softmax", {}), ("linear", {"chunk_size": 4}), ("favor", {"num_features": 8, "chunk_size": 4}),
         ("taylor", {"order": 2, "chunk_size": 4})]


@pytest.mark.slow
@pytest.mark.parametrize("kind,params", KINDS, ids=lambda p: str(p))
def test_causal_lm_is_causal_and_trains(kind, params):
  model = T.CausalLM(T.TransformerConfig(num_layers=2, num_heads=2, head_dim=4, attention=kind,
                                         attention_params=params), vocab_size=11, max_length=16)
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 11, size=(2, 10)), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), ids)

  @jax.jit
  def logits_and_grad(variables, ids):
    def loss(v):
      logits = model.apply(v, ids)
      return -jnp.mean(jax.nn.log_softmax(logits[:, :-1])[
          jnp.arange(2)[:, None], jnp.arange(9)[None], ids[:, 1:]]), logits
    (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(variables)
    return logits, value, grads

  logits, value, grads = logits_and_grad(variables, ids)
  assert logits.shape == (2, 10, 11) and np.isfinite(float(value))
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))
  changed = ids.at[:, 6:].set((ids[:, 6:] + 1) % 11)
  logits2, _, _ = logits_and_grad(variables, changed)
  np.testing.assert_allclose(logits[:, :6], logits2[:, :6], atol=1e-5)
  assert not np.allclose(logits[:, 6:], logits2[:, 6:])


def test_encoder_decoder_layers_cross_attention_and_padding():
  enc_layer = T.Encoder(T.TransformerConfig(num_layers=1, num_heads=2, head_dim=4, attention="linear"))
  dec_layer = T.Decoder(T.TransformerConfig(num_layers=1, num_heads=2, head_dim=4, attention="softmax"))
  rng = np.random.default_rng(1)
  src = jnp.asarray(rng.normal(size=(2, 7, 8)), jnp.float32)
  tgt = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  src_mask = jnp.asarray([[True] * 7, [True] * 4 + [False] * 3])

  def forward(src, tgt):
    enc_vars = enc_layer.init(jax.random.key(0), src, src_mask)
    encoded = enc_layer.apply(enc_vars, src, src_mask)
    dec_vars = dec_layer.init(jax.random.key(1), tgt, encoded, encoded_mask=src_mask)
    return encoded, dec_layer.apply(dec_vars, tgt, encoded, encoded_mask=src_mask)

  forward = jax.jit(forward)
  encoded, out = forward(src, tgt)
  assert encoded.shape == (2, 7, 8) and out.shape == (2, 5, 8)
  # Padded source positions change neither the encoding of real ones nor the decoder.
  encoded2, out2 = forward(src.at[1, 4:].set(100.0), tgt)
  np.testing.assert_allclose(encoded[1, :4], encoded2[1, :4], atol=1e-4)
  np.testing.assert_allclose(out, out2, atol=1e-4)


@pytest.mark.slow
def test_dropout_and_favor_redraw_follow_flags():
  model = T.CausalLM(T.TransformerConfig(num_layers=1, num_heads=2, head_dim=4, attention="favor",
                                         attention_params={"num_features": 8}, dropout_rate=0.5,
                                         positions="sinusoidal"), vocab_size=7, max_length=8)
  ids = jnp.zeros((1, 8), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), ids)

  @jax.jit
  def apply(variables, key, deterministic_key):
    fixed = model.apply(variables, ids)
    train = model.apply(variables, ids, deterministic=False,
                        rngs={"dropout": key, "attention": key})
    redraw = model.apply(variables, ids, rngs={"attention": key})
    redraw_same = model.apply(variables, ids, rngs={"attention": deterministic_key})
    return fixed, model.apply(variables, ids), train, redraw, redraw_same

  fixed, fixed_again, train, redraw, redraw_same = apply(variables, jax.random.key(1),
                                                         jax.random.key(1))
  np.testing.assert_allclose(fixed, fixed_again)
  assert not np.allclose(fixed, train)
  assert not np.allclose(fixed, redraw)      # a new projection draw
  np.testing.assert_allclose(redraw, redraw_same)


def test_sinusoidal_positions_and_intermediates():
  table = T.sinusoidal_positions(10, 6)
  assert table.shape == (10, 6) and np.allclose(table[0, 1::2], 1) and np.allclose(table[0, 0::2], 0)
  mha = T.MultiHeadAttention(T.TransformerConfig(num_heads=2, head_dim=3))
  x = jnp.ones((1, 5, 4))
  variables = mha.init(jax.random.key(0), x)
  out, state = mha.apply(variables, x, mutable=["intermediates"])
  q, k = state["intermediates"]["qk"][0]
  assert out.shape == (1, 5, 4) and q.shape == (1, 5, 2, 3) and k.shape == (1, 5, 2, 3)


@pytest.mark.slow
def test_compute_dtype_keeps_float32_params_and_remat_keeps_gradients():
  """bfloat16 compute: float32 parameters and logits, outputs near float32's; remat: same grads."""
  ids = jnp.asarray(np.random.default_rng(3).integers(0, 13, size=(2, 12)), jnp.int32)
  base = T.TransformerConfig(num_layers=2, num_heads=2, head_dim=8, dropout_rate=0.1)

  def loss_and_grads(cfg):
    model = T.CausalLM(cfg, vocab_size=13, max_length=12)
    variables = model.init(jax.random.key(0), ids)

    def loss(v):
      logits = model.apply(v, ids, deterministic=False, rngs={"dropout": jax.random.key(5)})
      return jnp.mean(jax.nn.logsumexp(logits, -1)), logits
    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables)
    return variables, logits, grads

  v32, logits32, grads32 = loss_and_grads(base)
  v16, logits16, _ = loss_and_grads(base.replace(dtype=jnp.bfloat16))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v16))
  assert logits16.dtype == jnp.float32
  np.testing.assert_allclose(logits16, logits32, atol=0.1)
  assert not np.array_equal(logits16, logits32)  # the compute really ran in bfloat16
  _, logits_remat, grads_remat = loss_and_grads(base.replace(remat=True))
  np.testing.assert_allclose(logits_remat, logits32, rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_remat), jax.tree.leaves(grads32)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_transformer_config_is_hashable_and_reads_config_sections():
  import ml_collections
  section = ml_collections.ConfigDict(dict(num_layers=3, num_heads=2, head_dim=8, ffn_ratio=2,
                                           activation="relu", dropout_rate=0.0, unrelated_key=1))
  cfg = T.TransformerConfig.from_config(section, attention="favor", attention_params={"num_features": 4})
  assert (cfg.num_layers, cfg.width, cfg.attention_kwargs) == (3, 16, {"num_features": 4})
  assert hash(cfg) == hash(T.TransformerConfig.from_config(section, attention="favor",
                                                           attention_params={"num_features": 4}))


@pytest.mark.parametrize("kind,params", [("softmax", {}), ("linear", {"chunk_size": 3})], ids=str)
@pytest.mark.parametrize("cross", [False, True], ids=["self_only", "cross_attention"])
def test_decoder_layer_is_causal(kind, params, cross):
  """Changing target positions >= t leaves the DecoderLayer's outputs before t unchanged
  (self-attention is causal; cross-attention sees the whole source, which stays fixed),
  and does change outputs from t on."""
  cfg = T.TransformerConfig(num_layers=1, num_heads=2, head_dim=4, attention=kind, attention_params=params)
  layer = T.DecoderLayer(config=cfg)
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 10, 8)), jnp.float32)
  encoded = jnp.asarray(rng.normal(size=(2, 7, 8)), jnp.float32) if cross else None
  variables = layer.init(jax.random.key(0), x, encoded)
  apply = jax.jit(lambda v, x, e: layer.apply(v, x, e))
  out = apply(variables, x, encoded)
  assert out.shape == x.shape
  for t in (0, 4, 9):
    changed = x.at[:, t:].set(jnp.asarray(rng.normal(size=(2, 10 - t, 8)), jnp.float32))
    out2 = apply(variables, changed, encoded)
    np.testing.assert_allclose(out[:, :t], out2[:, :t], atol=1e-5, err_msg=f"t={t}")
    assert not np.allclose(out[:, t:], out2[:, t:], atol=1e-3)
  if cross:  # the source does reach every position
    out3 = apply(variables, x, encoded + 1.0)
    assert not np.allclose(out, out3, atol=1e-3, rtol=0) and np.all(np.abs(out - out3).max(-1) > 1e-4)


@pytest.mark.parametrize("kind,params", [("softmax", {}), ("linear", {"chunk_size": 4}),
                                         ("favor", {"num_features": 16, "chunk_size": 4})], ids=str)
@pytest.mark.slow
def test_seq2seq_incremental_decoding_matches_the_full_forward_pass(kind, params):
  """One position per call with the key/value cache gives the teacher-forced logits."""
  cfg = T.TransformerConfig(num_layers=2, num_heads=2, head_dim=8, attention=kind, attention_params=params)
  model = T.Seq2Seq(cfg, vocab_size=17, max_source_length=9, max_target_length=7)
  rng = np.random.default_rng(0)
  source = jnp.asarray(rng.integers(1, 17, size=(3, 9)), jnp.int32).at[1, 6:].set(0)  # padded row
  target = jnp.asarray(rng.integers(1, 17, size=(3, 7)), jnp.int32)
  variables = model.init(jax.random.key(0), source, target)
  full = model.apply(variables, source, target)
  encoded = model.apply(variables, source, method=T.Seq2Seq.encode)
  cache = T.init_cache(model, variables["params"], encoded, source != 0)

  @jax.jit
  def step(cache, token, t):
    logits, state = model.apply({"params": variables["params"], "cache": cache}, token, encoded, source != 0,
                                decode=True, position=t, method=T.Seq2Seq.decode, mutable=["cache"])
    return state["cache"], logits[:, 0]

  steps = []
  for t in range(target.shape[1]):
    cache, logits = step(cache, target[:, t:t + 1], t)
    steps.append(logits)
  np.testing.assert_allclose(np.stack(steps, 1), full, rtol=2e-4, atol=2e-4)
  # A beam reorder permutes the cache rows: decoding row 2's history from row 0 gives row 2's logits.
  moved = decoding.reorder_cache(cache, jnp.asarray([2, 1, 0]))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(decoding.reorder_cache(moved, jnp.asarray([2, 1, 0]))),
                                                  jax.tree.leaves(cache)))
