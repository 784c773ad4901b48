"""lmsys.nn.attention: every kind against its exact quadratic form."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64  # a context manager in jax >= 0.8

from lmsys import timing
from lmsys.nn import attention as A

# favor's draw (the rng path) is tested once below; elsewhere a fixed
# projection saves compiling the draw into every test (seconds each on CPU).
_PROJECTION = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)

KINDS = [
    ("softmax", {}),
    ("linear", {"feature_map": "elu"}),
    ("linear", {"feature_map": "relu"}),
    ("favor", {"projection": _PROJECTION}),
    ("taylor", {"order": 2}),
    ("taylor", {"order": 3}),
    ("limit", {"order": 2}),
    ("limit", {"order": 3}),
]


def _qkv(seed=0, batch=2, length=23, heads=3, dim=4, value_dim=5, dtype=jnp.float32):
  # numpy draws: jax.random would compile a new sampler for every shape.
  rng = np.random.default_rng(seed)
  q, k = (rng.normal(size=(batch, length, heads, dim)) for _ in range(2))
  v = rng.normal(size=(batch, length, heads, value_dim))
  return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def _attend_and_reference(q, k, v, kind, params, causal, mask, rng, chunk_size=5):
  """Both evaluated in one jit (eager dispatch of many small ops is slow)."""
  def both(q, k, v, mask, rng):
    kw = dict(params)
    if "projection" in kw:
      kw["projection"] = jnp.asarray(kw["projection"], q.dtype)
    out = A.attend(q, k, v, kind=kind, causal=causal, mask=mask, rng=rng, chunk_size=chunk_size, **kw)
    ref = A.reference_attend(q, k, v, kind=kind, causal=causal, mask=mask, rng=rng, **kw)
    return out, ref
  return jax.jit(both)(q, k, v, mask, rng)


@pytest.mark.parametrize("kind,params", KINDS, ids=lambda p: str(p)[:40])
def test_attend_matches_quadratic_reference(kind, params):
  # Odd-order truncations can drive a normaliser near zero (see the module
  # docstring), which would turn float32 rounding into large output errors;
  # the identity itself is checked exactly in float64.
  odd = params.get("order", 2) % 2 == 1
  with enable_x64(odd):
    dtype = jnp.float64 if odd else jnp.float32
    q, k, v = _qkv(dtype=dtype)
    mask = jnp.arange(23)[None] < jnp.array([[23], [15]])  # second row padded after 15
    for causal in (False, True):
      out, ref = _attend_and_reference(q, k, v, kind, params, causal, mask, jax.random.key(7))
      assert out.shape == (2, 23, 3, 5)
      tol = 1e-9 if odd else 2e-5
      np.testing.assert_allclose(out, ref, atol=tol * float(jnp.abs(ref).max()), rtol=0)


@pytest.mark.parametrize("kind,params", KINDS[:4] + [("taylor", {"order": 2})], ids=lambda p: str(p)[:40])
def test_padded_keys_and_future_keys_are_invisible(kind, params):
  q, k, v = _qkv(1)
  mask = jnp.arange(23)[None] < 17
  mask = jnp.concatenate([mask, mask])
  f = jax.jit(lambda k, v: A.attend(q, k, v, kind=kind, causal=True, mask=mask,
                                    rng=jax.random.key(3), chunk_size=4, **params))
  out = f(k, v)
  # Change the padded keys/values (beyond 17), and the future of position 10.
  out2 = f(k.at[:, 17:].set(50.0), v.at[:, 17:].set(-9.0))
  np.testing.assert_allclose(out, out2, atol=1e-5)
  out3 = f(k.at[:, 11:].add(1.0), v.at[:, 11:].add(1.0))
  np.testing.assert_allclose(out[:, :11], out3[:, :11], atol=1e-5)
  assert not np.allclose(out[:, 11:17], out3[:, 11:17])


@pytest.mark.parametrize("orthogonal", [True, False])
def test_favor_draw_from_rng_matches_reference(orthogonal):
  q, k, v = _qkv()
  params = {"num_features": 12, "orthogonal": orthogonal}
  out, ref = _attend_and_reference(q, k, v, "favor", params, True, None, jax.random.key(1))
  np.testing.assert_allclose(out, ref, atol=2e-5 * float(jnp.abs(ref).max()))
  other, _ = _attend_and_reference(q, k, v, "favor", params, True, None, jax.random.key(2))
  assert not np.allclose(out, other)   # a new rng is a new draw


def test_cross_attention_shapes_and_reference():
  q, _, _ = _qkv(2, length=7)
  _, k, v = _qkv(3, length=19)
  mask = jnp.arange(19)[None].repeat(2, 0) < 12
  for kind, params in (KINDS[1], KINDS[3]):
    out, ref = _attend_and_reference(q, k, v, kind, params, False, mask, jax.random.key(0))
    assert out.shape == (2, 7, 3, 5)
    np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_taylor_and_limit_features_give_the_implicit_kernel(order):
  with enable_x64():
    x = jnp.asarray(np.random.default_rng(order).normal(size=(2, 6, 3)))
    q, k = x[0], x[1]
    dots = q @ k.T
    taylor = A.taylor_features(q, order) @ A.taylor_features(k, order).T
    limit = A.limit_features(q, order) @ A.limit_features(k, order).T
    np.testing.assert_allclose(taylor, sum(dots ** m / math.factorial(m) for m in range(order + 1)), rtol=1e-10)
    np.testing.assert_allclose(limit, (1 + dots / order) ** order, rtol=1e-10, atol=1e-12)
    assert A.taylor_features(q, order).shape[-1] == A.feature_dim("taylor", 3, order=order)
    assert A.limit_features(q, order).shape[-1] == A.feature_dim("limit", 3, order=order)


def test_odd_orders_go_negative_even_orders_do_not():
  s = jnp.linspace(-6.0, 6.0, 121)
  assert float(A.taylor_kernel(s, 1).min()) < 0 and float(A.taylor_kernel(s, 3).min()) < 0
  assert float(A.taylor_kernel(s, 2).min()) > 0 and float(A.taylor_kernel(s, 4).min()) > 0
  assert float(A.limit_kernel(s, 1).min()) < 0 and float(A.limit_kernel(s, 2).min()) >= 0


@pytest.mark.parametrize("orthogonal", [False, True])
def test_favor_is_unbiased(orthogonal):
  dim, num_features, draws = 4, 8, 4000
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, dim)) * 0.6, jnp.float32)
  q, k = x[0], x[1]
  exact = jnp.exp(q @ k.T)

  def estimate(rng):
    w = A.favor_projection(rng, num_features, dim, orthogonal)
    return A.favor_features(q, w) @ A.favor_features(k, w).T

  samples = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(1), draws))
  mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(draws)
  z = (mean - exact) / stderr
  assert float(jnp.abs(z).max()) < 4.5, z            # 25 pairs, |z| < 4.5 each
  assert float(samples.min()) > 0                    # positive features
  # Not trivially true: the same test rejects an estimator biased by 5%.
  assert float(jnp.abs((1.05 * mean - exact) / stderr).max()) > 4.5


def test_orthogonal_projection_rows_are_orthogonal_within_blocks():
  w = jax.jit(lambda r: A.favor_projection(r, 10, 4, orthogonal=True))(jax.random.key(0))
  assert w.shape == (10, 4)
  block = w[:4] / jnp.linalg.norm(w[:4], axis=1, keepdims=True)
  np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-5)


def test_favor_is_stable_for_large_inputs():
  q, k, v = _qkv(4)
  q, k = q * 30, k * 30    # exp(w.x) overflows float32 without the offsets
  out = jax.jit(lambda q, k, v: A.attend(q, k, v, kind="favor", causal=True,
                                         projection=jnp.asarray(_PROJECTION)))(q, k, v)
  assert bool(jnp.isfinite(out).all())


def test_favor_needs_rng_and_unknown_kind_raises():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="rng"):
    A.attend(q, k, v, kind="favor")
  with pytest.raises(ValueError, match="unknown attention kind"):
    A.attend(q, k, v, kind="cosine")
  with pytest.raises(ValueError, match="feature map"):
    A.attend(q, k, v, kind="linear", feature_map="sigmoid")


@pytest.mark.parametrize("kind,params", [("linear", {}), ("favor", {"num_features": 16})])
def test_causal_linear_attention_never_builds_an_n_by_n_array(kind, params):
  n = 1024
  q = jnp.zeros((1, n, 1, 8))
  def f(q, k, v):
    return A.attend(q, k, v, kind=kind, causal=True, chunk_size=64, rng=jax.random.key(0),
                    **params)
  hlo = jax.jit(f).lower(q, q, q).as_text()
  assert f"{n},{n}" not in hlo.replace(" ", "") and f"{n}x{n}" not in hlo
  softmax_hlo = jax.jit(lambda q, k, v: A.attend(q, k, v, causal=True)).lower(q, q, q).as_text()
  assert f"{n}x{n}" in softmax_hlo or f"{n},{n}" in softmax_hlo.replace(" ", "")
  linear_mem = timing.compiled_memory(f, q, q, q)["temp_bytes"]
  assert linear_mem < 4 * n * n // 4    # far below one n x n float32 matrix
  q4 = jnp.zeros((1, 4 * n, 1, 8))      # and linear in n: 4x the length, ~4x the memory
  assert timing.compiled_memory(f, q4, q4, q4)["temp_bytes"] < 5 * linear_mem


def test_linear_attention_matrix_rank_is_capped_by_feature_dim():
  q, k, _ = _qkv(5, batch=1, length=40, heads=1, dim=4)
  linear = jax.jit(lambda q, k: A.attention_matrix(q, k, kind="linear"))(q, k)[0, 0]
  softmax = jax.jit(lambda q, k: A.attention_matrix(q, k, kind="softmax"))(q, k)[0, 0]
  np.testing.assert_allclose(linear.sum(-1), 1, atol=1e-5)
  assert A.numerical_rank(linear) <= 4
  assert A.numerical_rank(softmax) > 4


# ---------------------------------------------------------------------------- FAVOR+ offsets

def _far_keys(k, radius):
  """Keys of norm `radius` after favor's scale^(1/2): FAVOR logits w.x - |x|^2/2 near -radius^2/2."""
  root = math.sqrt(1 / math.sqrt(k.shape[-1]))
  return k / jnp.linalg.norm(k, axis=-1, keepdims=True) * (radius / root)


def _peak_key(shape, projection, dim):
  """A key at the peak of the largest feature's logit, |w|^2/2 > 0 (favor's scale included)."""
  w = projection[np.argmax(np.linalg.norm(projection, axis=1))]
  root = math.sqrt(1 / math.sqrt(dim))
  return jnp.broadcast_to(jnp.asarray(w / root, jnp.float32), shape)


def _favor_logit_max(k, projection):
  x = k * math.sqrt(1 / math.sqrt(k.shape[-1]))
  return float((x @ projection.T - 0.5 * (x * x).sum(-1, keepdims=True)).max())


@functools.partial(jax.jit, static_argnames=("causal", "chunk_size"))
def _favor(q, k, v, causal, mask=None, chunk_size=4):
  return A.attend(q, k, v, kind="favor", causal=causal, mask=mask,
                  projection=jnp.asarray(_PROJECTION), chunk_size=chunk_size)


def _favor_reference64(q, k, v, causal, mask=None):
  with enable_x64():
    f64 = lambda x: jnp.asarray(np.asarray(x), jnp.float64)
    return np.asarray(A.reference_attend(f64(q), f64(k), f64(v), kind="favor", causal=causal,
                                         mask=mask, projection=f64(_PROJECTION)))


@pytest.mark.parametrize("causal", [False, True])
def test_favor_padded_keys_with_huge_logits_are_ignored(causal):
  # Visible keys far out (logits ~ -130), padded keys at a feature's peak (logit
  # ~ +4): exp(padded - max over visible) overflows float32 unless the padded
  # keys are dropped before the exp; inf * 0 would then be NaN over whole rows.
  q, k, v = _qkv(6)
  k = _far_keys(k, 16.0)
  mask = jnp.concatenate([jnp.arange(23)[None] < 17, jnp.arange(23)[None] < 12])
  padded = jnp.where(mask[:, :, None, None], k, _peak_key(k.shape, _PROJECTION, 4))
  assert _favor_logit_max(padded, _PROJECTION) - _favor_logit_max(k, _PROJECTION) > 90
  out = _favor(q, padded, v, causal, mask)
  assert bool(jnp.isfinite(out).all())
  np.testing.assert_allclose(out, _favor(q, k, v, causal, mask), atol=1e-5, rtol=1e-5)
  ref = _favor_reference64(q, k, v, causal, mask)
  np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("chunk_size", [3, 64])   # several chunks; one chunk holding all
def test_causal_favor_outputs_do_not_depend_on_future_keys(chunk_size):
  # Keys far out (logits ~ -130); the last key is changed to one at a feature's
  # peak (logit ~ +4), to 100x itself, or to 0. An offset taken over all
  # positions would underflow every earlier key's features (outputs -> 0).
  q, k, v = _qkv(7, length=11)
  k = _far_keys(k, 16.0)
  out = _favor(q, k, v, True, chunk_size=chunk_size)
  ref = _favor_reference64(q, k, v, True)
  np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())
  last = k[:, -1:]
  for changed in (_peak_key(last.shape, _PROJECTION, 4), last * 100, last * 0):
    out2 = _favor(q, k.at[:, -1:].set(changed), v, True, chunk_size=chunk_size)
    assert bool(jnp.isfinite(out2).all())
    np.testing.assert_allclose(out2[:, :-1], out[:, :-1], atol=1e-5 * np.abs(ref).max(), rtol=1e-5)



# ---------------------------------------------------------------------------- chunk-parallel, fused, bf16

@pytest.mark.parametrize("kind,params", [KINDS[1], KINDS[3], KINDS[4]], ids=lambda p: str(p)[:40])
def test_causal_chunk_sizes_and_leading_padding_match_reference(kind, params):
  # Chunks of 1, of a size not dividing L = 23, and of L (one chunk); batch row 1 has its
  # first 6 keys padded, so its first 6 queries see no key at all (output 0).
  q, k, v = _qkv(8)
  mask = jnp.stack([jnp.arange(23) < 20, jnp.arange(23) >= 6])
  for chunk_size in (1, 4, 23):
    out, ref = _attend_and_reference(q, k, v, kind, params, True, mask, None, chunk_size=chunk_size)
    np.testing.assert_allclose(out, ref, atol=2e-5 * float(jnp.abs(ref).max()), rtol=0)
    assert float(jnp.abs(out[1, :6]).max()) == 0


def test_fused_softmax_matches_hand_written_reference(monkeypatch):
  calls = []
  fused = jax.nn.dot_product_attention
  monkeypatch.setattr(jax.nn, "dot_product_attention", lambda *a, **kw: calls.append(1) or fused(*a, **kw))
  q, k, v = _qkv(9, value_dim=4)                          # fused needs value size == key size
  full = jnp.ones((2, 23), bool)
  no_key = jnp.stack([jnp.arange(23) < 17, jnp.zeros(23, bool)])   # row 1: no visible key at all
  late = jnp.stack([jnp.arange(23) >= 5, jnp.arange(23) < 9])      # causal rows 0-4 see nothing
  both = jax.jit(lambda q, k, v, mask, causal: (
      A.attend(q, k, v, kind="softmax", causal=causal, mask=mask),
      A.attend(q, k, v, kind="softmax", causal=causal, mask=mask, implementation="reference")),
      static_argnames="causal")
  for mask in (None, full, no_key, late):
    for causal in (False, True):
      out, ref = both(q, k, v, mask, causal)
      np.testing.assert_allclose(out, ref, atol=2e-6, rtol=1e-5)
      assert bool(jnp.isfinite(out).all())
  assert len(calls) == 4                                  # traced with and without a mask, causal or not
  np.testing.assert_array_equal(out[0, :5], 0)            # `late`, causal: queries before key 5
  # Cross-attention (Lq != Lk) with a mask, and the fallback (value size != key size).
  qx, _, _ = _qkv(10, length=7)
  _, k5, v5 = _qkv(11)
  out, ref, out5, ref5 = jax.jit(lambda: (
      A.attend(qx, k, v, kind="softmax", mask=no_key), A.reference_attend(qx, k, v, mask=no_key),
      A.attend(q, k5, v5, kind="softmax", causal=True), A.reference_attend(q, k5, v5, causal=True)))()
  np.testing.assert_allclose(out, ref, atol=2e-6)
  np.testing.assert_array_equal(out[1], 0)
  np.testing.assert_allclose(out5, ref5, atol=2e-6)
  with pytest.raises(ValueError, match="implementation"):
    A.attend(q, k, v, kind="softmax", implementation="flash")


@pytest.mark.parametrize("kind,params", [("softmax", {}), ("linear", {}), ("favor", {"projection": _PROJECTION})],
                         ids=lambda p: str(p)[:20])
def test_bfloat16_inputs_match_float32_reference(kind, params):
  q, k, v = _qkv(12, value_dim=4)
  mask = jnp.stack([jnp.arange(23) < 23, jnp.arange(23) < 15])
  for causal in (False, True):
    kw = dict(params)
    if "projection" in kw:
      kw["projection"] = jnp.asarray(kw["projection"])
    f = jax.jit(lambda q, k, v: A.attend(q, k, v, kind=kind, causal=causal, mask=mask, chunk_size=5, **kw))
    out = f(*(x.astype(jnp.bfloat16) for x in (q, k, v)))
    assert out.dtype == jnp.bfloat16
    ref = A.reference_attend(q, k, v, kind=kind, causal=causal, mask=mask, **kw)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2 * float(jnp.abs(ref).max()))


def test_causal_favor_gradients_are_finite_with_huge_padded_keys():
  q, k, v = _qkv(13)
  k = _far_keys(k, 16.0)
  mask = jnp.stack([jnp.arange(23) < 17, jnp.arange(23) >= 4])
  k = jnp.where(mask[:, :, None, None], k, _peak_key(k.shape, _PROJECTION, 4))
  for causal in (False, True):
    loss = lambda q, k, v: jnp.sum(A.attend(q, k, v, kind="favor", causal=causal, mask=mask,
                                            projection=jnp.asarray(_PROJECTION), chunk_size=4) ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)
    np.testing.assert_array_equal(grads[1][0, 17:], 0)     # padded keys get no gradient


@pytest.mark.parametrize("kind,params", KINDS[1:], ids=[f"{k}-{list(p.values())[0] if p else ''}" for k, p in KINDS[1:]])
def test_linear_kinds_gradients_match_the_quadratic_form(kind, params):
  """The VJPs of the non-causal products and of the normaliser are written out (layouts and
  fusions for the CPU): with the causal path's autodiff, they must give the true gradient."""
  q, k, v = _qkv(14)
  mask = jnp.stack([jnp.arange(23) < 23, jnp.arange(23) < 15])
  cotangent = jnp.asarray(np.random.default_rng(15).normal(size=v.shape), jnp.float32)
  kw = {**params, **({"projection": jnp.asarray(params["projection"])} if "projection" in params else {})}
  for causal in (False, True):
    def loss(attend_fn, q, k, v):
      return jnp.sum(attend_fn(q, k, v, kind=kind, causal=causal, mask=mask, **kw) * cotangent)
    fast = jax.jit(jax.grad(functools.partial(loss, functools.partial(A.attend, chunk_size=5)), argnums=(0, 1, 2)))
    exact = jax.grad(functools.partial(loss, A.reference_attend), argnums=(0, 1, 2))
    for name, g, ref in zip("qkv", fast(q, k, v), exact(q, k, v)):
      np.testing.assert_allclose(g, ref, rtol=2e-4, atol=2e-4 * float(jnp.abs(ref).max()),
                                 err_msg=f"d/d{name}, causal={causal}")
