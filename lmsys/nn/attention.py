"""Attention of every kind through one call (notes 2 and 3: kexue 8610, 8601).

    out = attend(q, k, v, kind="favor", causal=True, mask=key_padding, rng=key,
                 num_features=256)

q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv]; mask: [B, Lk] bool, True
for real keys. Every kind is "normalised kernel attention":

    out_i = sum_j K(q_i, k_j) v_j / sum_j K(q_i, k_j)     (j <= i when causal)

- softmax: K = exp(q.k * scale), scale = 1/sqrt(D), quadratic. `attend` runs
           the fused `jax.nn.dot_product_attention` (XLA; cuDNN flash attention
           on a GPU for 16-bit inputs), as practitioners do; the hand-written
           `softmax_reference` (implementation="reference") is what it is
           tested against.
- linear:  K = phi(q).phi(k), phi = elu+1 or relu (Katharopoulos et al. 2020).
- favor:   Performer FAVOR+, phi(x) = m^-1/2 exp(w_i.x - |x|^2/2), w ~ N(0, I)
           (orthogonal blocks by default): an unbiased estimate of exp(q.k).
- taylor:  exp(q.k) ~ sum_{m<=P} (q.k)^m / m!, features (1, x, x⊗x/sqrt 2!, ...).
- limit:   exp(q.k) ~ (1 + q.k/P)^P, features ⊗^P (1, x/sqrt P).

favor, taylor and limit approximate softmax attention: they see q and k scaled
by scale^(1/2) each, so their kernel estimates exp(q.k * scale).

Every kernel kind runs as linear attention, phi(q) (sum_j phi(k_j)^T [v_j, 1]),
in O(L) time and memory (the appended 1 gives the normaliser in the same
product). Causal runs chunk-parallel, never through an L x L mask: positions
cut into chunks of `chunk_size` (default per backend, `default_chunk_size`);
inside a chunk a C x C masked product; across chunks, every chunk's state
phi(K_c)^T [V_c, 1] at once, an exclusive prefix sum over the chunk axis, and
one batched product with phi(Q). No sequential loop. States take
L/C * F * (Dv+1) floats per head: linear in L.

FAVOR+ keeps exp(.) <= 1 with offsets that cancel in the normalised output:
per query its largest logit, per key the largest visible key logit. Padded keys
get logit -inf before the exp (features exactly 0, so a padded key with a huge
logit cannot overflow into inf * 0 = NaN). Causal FAVOR+ must not let a later
key's logit set an earlier query's offset (underflowing its features to 0):
it carries a running maximum M_i over keys j <= i, rescaling as online softmax
does (a key's kernel with query i by exp(M_j - M_i) inside a chunk; each chunk
state relative to the running maximum at its end, merged by
`lax.associative_scan` with the same rescaling). Every factor is <= 1.

`reference_attend` evaluates the same kernel as an explicit L x L matrix
(taylor and limit implicitly through powers of q.k), which is what the tests
compare against. Inputs may be bfloat16: logits of FAVOR+ and softmax, and
every sum over keys, are taken in float32.

Caveat (note 3): truncations of odd order (taylor P odd, limit P odd) go
negative for q.k < -1 (P=1) and further out for larger odd P, so the
normaliser sum_j K(q_i, k_j) can reach zero or change sign and the output
blow up. Nothing is clamped here (a clamp would no longer be linear
attention); use even P for anything trained, and the approximation experiment
reports how often the kernel and the normaliser go negative.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("softmax", "linear", "favor", "taylor", "limit")
LINEAR_FEATURE_MAPS = ("elu", "relu")


# ----------------------------------------------------------------------------
# Feature maps: x [..., D] -> phi(x) [..., F].
# ----------------------------------------------------------------------------

def elu_features(x):
  """elu(x) + 1 > 0: the linear transformer's map."""
  return jax.nn.elu(x) + 1.0


def relu_features(x):
  """relu(x) >= 0; rows of zeros give a zero normaliser (handled as 0/0 -> 0)."""
  return jax.nn.relu(x)


def favor_projection(rng, num_features: int, dim: int, orthogonal: bool = True):
  """Random w_i ~ N(0, I_dim) as rows [num_features, dim].

  Orthogonal: rows drawn in blocks of `dim` mutually orthogonal directions
  (QR of a Gaussian matrix), each rescaled by the norm of an independent
  Gaussian vector so that every row is still exactly N(0, I) marginally.
  """
  if not orthogonal:
    return jax.random.normal(rng, (num_features, dim))
  num_blocks = -(-num_features // dim)
  rng_blocks, rng_norms = jax.random.split(rng)
  gaussians = jax.random.normal(rng_blocks, (num_blocks, dim, dim))
  qs, rs = jnp.linalg.qr(gaussians)                        # columns orthonormal
  # Sign-fix so that Q is Haar-distributed (QR alone fixes the signs of R's diagonal,
  # which biases the directions and with them the kernel estimate).
  qs = qs * jnp.sign(jnp.diagonal(rs, axis1=-2, axis2=-1))[:, None, :]
  directions = jnp.swapaxes(qs, -1, -2).reshape(num_blocks * dim, dim)[:num_features]
  norms = jnp.linalg.norm(jax.random.normal(rng_norms, (num_features, dim)), axis=-1)
  return directions * norms[:, None]


def favor_features(x, projection, offset=None):
  """Positive random features m^-1/2 exp(w.x - |x|^2/2 - offset).

  E_w[phi(q).phi(k)] = exp(q.k) when offset is None. A per-query offset only
  rescales that query's row and a per-head offset on the keys rescales every
  kernel value alike, so both cancel in the normalised attention: that is how
  `favor_attention` keeps the exponent <= 0 (numerical stability).
  """
  logits = _favor_logits(x, projection)
  if offset is not None:
    logits = logits - offset
  return jnp.exp(logits) / math.sqrt(projection.shape[0])


def _favor_logits(x, projection):
  return jnp.einsum("...d,fd->...f", x, projection) - 0.5 * jnp.sum(x * x, -1, keepdims=True)


def _outer_power(x, order: int):
  """⊗^order x, flattened: [..., D] -> [..., D^order] (order 0 gives ones)."""
  out = jnp.ones(x.shape[:-1] + (1,), x.dtype)
  for _ in range(order):
    out = (out[..., :, None] * x[..., None, :]).reshape(x.shape[:-1] + (-1,))
  return out


def taylor_features(x, order: int):
  """(1, x, x⊗x/sqrt 2!, ..., ⊗^P x/sqrt P!): phi(q).phi(k) = sum_m (q.k)^m/m!."""
  return jnp.concatenate(
      [_outer_power(x, m) / math.sqrt(math.factorial(m)) for m in range(order + 1)], -1)


def limit_features(x, order: int):
  """⊗^P (1, x/sqrt P): phi(q).phi(k) = (1 + q.k/P)^P."""
  ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
  return _outer_power(jnp.concatenate([ones, x / math.sqrt(order)], -1), order)


def taylor_kernel(dots, order: int):
  """sum_{m<=P} s^m / m!, the kernel taylor_features computes, from s = q.k."""
  return sum(dots ** m / math.factorial(m) for m in range(order + 1))


def limit_kernel(dots, order: int):
  """(1 + s/P)^P, the kernel limit_features computes, from s = q.k."""
  return (1.0 + dots / order) ** order


def feature_dim(kind: str, head_dim: int, *, num_features: int = 256, order: int = 2, **unused):
  """Dimension F of phi for a kind (softmax: infinite)."""
  del unused
  if kind == "softmax":
    return math.inf
  if kind == "linear":
    return head_dim
  if kind == "favor":
    return num_features
  if kind == "taylor":
    return sum(head_dim ** m for m in range(order + 1))
  if kind == "limit":
    return (head_dim + 1) ** order
  raise ValueError(f"unknown attention kind {kind!r} (known: {', '.join(KINDS)})")


# ----------------------------------------------------------------------------
# Attention from features: O(L) time and memory.
# ----------------------------------------------------------------------------

# Causal chunk C per backend (see default_chunk_size); any other backend gets the CPU's.
# CPU: measured (h=12, d=64, n=8192, 2 shared cores, causal / non-causal linear elu+1):
# C=32 2.25x, C=64 2.04x, C=128 2.33x. GPU and TPU: not measured yet (larger tiles
# suit their matrix units); scripts/bench.py causal_chunk_products measures the products at the default.
CHUNK_SIZES = {"cpu": 64, "gpu": 128, "tpu": 256}


def default_chunk_size(backend: str | None = None) -> int:
  """The causal chunk C for a backend (default: jax.default_backend()).

  C trades the intra-chunk C x C products (~2C(F + Dv) flops per token, more
  as C grows) against the number of per-chunk states (L/C of them, F x (Dv+1)
  each, read and prefix-summed: fewer as C grows). Memory stays linear in L
  for any fixed C: L C scores and L/C * F * (Dv+1) states per head.
  """
  return CHUNK_SIZES.get(backend or jax.default_backend(), CHUNK_SIZES["cpu"])


def _accumulator(dtype):
  """float32 (or wider) for sums over many keys, whatever the inputs' dtype (e.g. bfloat16)."""
  return jnp.promote_types(dtype, jnp.float32)


def _einsum(spec, a, b, acc):
  """einsum accumulated in `acc` (float32 for bfloat16 inputs).

  XLA's CPU backend lacks some bf16 x bf16 -> f32 products, so there the
  inputs are upcast first (no-op for float32).
  """
  if jax.default_backend() == "cpu":
    a, b = a.astype(acc), b.astype(acc)
  return jnp.einsum(spec, a, b, preferred_element_type=acc)


def _safe_divide(num, den):
  """num / den with 0/0 -> 0 (a query with no visible key, or all-zero relu features)."""
  return num / jnp.where(den == 0, 1, den)[..., None]


def _with_ones(v):
  """[v, 1]: one product then gives both sum_j K_ij v_j and the normaliser sum_j K_ij."""
  return jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], -1)


@jax.custom_vjp
def _normalise(out):
  """[..., Dv + 1] (numerator, normaliser) -> [..., Dv].

  The VJP is written out: autodiff's d/d normaliser, a broadcast multiply summed
  over Dv, is a fusion XLA's CPU backend (jax 0.10) ran at 35 ms for L = 8192,
  h = 12, against ~2 ms as the einsum below.
  """
  return _normalise_fwd(out)[0]


def _normalise_fwd(out):
  den = out[..., -1]
  result = _safe_divide(out[..., :-1], den)
  return result, (result, den)


def _normalise_bwd(residuals, g):
  result, den = residuals
  safe = jnp.where(den == 0, 1, den)
  g_num = g / safe[..., None]
  g_den = jnp.where(den == 0, 0, -jnp.einsum("...d,...d->...", g, result) / safe)
  return (jnp.concatenate([g_num, g_den[..., None].astype(g_num.dtype)], -1),)


_normalise.defvjp(_normalise_fwd, _normalise_bwd)


def linear_attention_from_features(phi_q, phi_k, v, *, causal=False, mask=None, chunk_size=None,
                                   key_offsets=None):
  """out_i = phi(q_i) sum_j phi(k_j)^T v_j / phi(q_i) sum_j phi(k_j), j <= i if causal.

  phi_q [B, Lq, H, F], phi_k [B, Lk, H, F], v [B, Lk, H, Dv], mask [B, Lk] bool.
  chunk_size: the causal chunk (default: default_chunk_size()).
  key_offsets [B, Lk, H], causal only: phi_k[j] carries a factor exp(-key_offsets[j])
  with key_offsets a running maximum (FAVOR+), so the kernel of query i and key j
  is rescaled by exp(key_offsets[j] - key_offsets[i]) <= 1 to share query i's offset.
  """
  if mask is not None:  # select, not multiply: inf * 0 would be NaN for any inf feature
    phi_k = jnp.where(mask[:, :, None, None], phi_k, 0)
  v1 = _with_ones(v)
  if causal:
    out = _causal_linear_attention(phi_q, phi_k, v1, chunk_size or default_chunk_size(), key_offsets)
  else:
    heads_first = lambda x: jnp.swapaxes(x, 1, 2)
    out = heads_first(_global_products(heads_first(phi_q), heads_first(phi_k), heads_first(v1)))
  return _normalise(out).astype(v.dtype)


@jax.custom_vjp
def _global_products(phi_q, phi_k, v1):
  """phi(Q) (phi(K)^T [V, 1]), heads first: [B, H, L, F], [B, H, L, F], [B, H, L, Dv+1].

  Heads lead so that each product is batched over a leading axis, which XLA's CPU
  backend runs several times faster than [B, L, H, F] contracted over L. Keys stay
  [L, F]: moving F before L is a real transpose that took longer than the product
  itself (docs/results/attention_cost.md measures it). The VJP is written
  out because the one autodiff derives puts L last in two of its four products and
  transposes them back (n = 8192: 100-110 ms against 53-60 ms written out); being a
  custom_vjp, this path has no forward-mode derivative (jax.jvp).
  """
  return _global_products_fwd(phi_q, phi_k, v1)[0]


def _global_products_fwd(phi_q, phi_k, v1):
  acc = _accumulator(v1.dtype)
  kv = _einsum("bhlf,bhld->bhfd", phi_k, v1, acc).astype(phi_q.dtype)
  return _einsum("bhlf,bhfd->bhld", phi_q, kv, acc), (phi_q, phi_k, v1, kv)


def _global_products_bwd(residuals, g):
  phi_q, phi_k, v1, kv = residuals
  acc = g.dtype
  g_q = _einsum("bhld,bhfd->bhlf", g, kv, acc)
  g_kv = _einsum("bhlf,bhld->bhfd", phi_q, g, acc)
  g_k = _einsum("bhld,bhfd->bhlf", v1, g_kv, acc)
  g_v1 = _einsum("bhlf,bhfd->bhld", phi_k, g_kv, acc)
  return g_q.astype(phi_q.dtype), g_k.astype(phi_k.dtype), g_v1.astype(v1.dtype)


_global_products.defvjp(_global_products_fwd, _global_products_bwd)


def _causal_linear_attention(phi_q, phi_k, v1, chunk_size, key_offsets=None):
  """Chunk-parallel causal linear attention: exact, O(L) memory, no L x L array.

  Positions are cut into N chunks of C. Inside a chunk the C x C masked product
  is taken directly; keys of earlier chunks enter through the states
  S_c = phi(K_c)^T [V_c, 1], computed for all chunks at once, and their
  exclusive prefix sum over the chunk axis, read by one batched product with
  phi(Q). With key_offsets (FAVOR+'s running maximum M) a key's features are
  relative to its own M_j: inside a chunk the kernel is rescaled by
  exp(M_j - M_i); a chunk's state is taken relative to the running maximum at
  its end, P_c, and the prefix sum rescales as online softmax does
  (_rescaled_sum), so the state before chunk c is relative to P_{c-1} <= M_i.
  Every factor is <= 1 and none depends on a key after the query.
  """
  batch, length, heads, _ = phi_q.shape
  if phi_k.shape[1] != length:
    raise ValueError(f"causal attention needs Lq == Lk, got {length} and {phi_k.shape[1]}")
  acc = _accumulator(v1.dtype)
  chunk = min(chunk_size, length)
  num_chunks = -(-length // chunk)
  padded = num_chunks * chunk

  def to_chunks(x, mode="constant"):  # [B, L, H, ...] -> [B, H, N, C, ...]
    x = jnp.pad(x, [(0, 0), (0, padded - length)] + [(0, 0)] * (x.ndim - 2), mode=mode)
    return jnp.moveaxis(x.reshape((batch, num_chunks, chunk) + x.shape[2:]), 3, 1)

  # Keys as [F, C] per chunk: every product below is then a plain [M, K] x [K, N] one,
  # which XLA's CPU backend runs several times faster than one contracting a leading axis.
  qc, kc, vc = to_chunks(phi_q), jnp.swapaxes(to_chunks(phi_k), -1, -2), to_chunks(v1)
  # Inside each chunk, for all chunks at once: memory L * C, not L^2.
  scores = _einsum("bhnif,bhnfj->bhnij", qc, kc, acc)
  if key_offsets is not None:
    offsets = to_chunks(key_offsets.astype(acc), mode="edge")          # [B, H, N, C]
    scores = scores * jnp.exp(jnp.minimum(offsets[..., None, :] - offsets[..., :, None], 0))
  scores = jnp.where(jnp.tril(jnp.ones((chunk, chunk), bool)), scores, 0)
  out = _einsum("bhnij,bhnjd->bhnid", scores.astype(vc.dtype), vc, acc)
  if num_chunks == 1:
    return _from_chunks(out, length)

  # Earlier chunks: every chunk's state at once, then the exclusive prefix over chunks.
  if key_offsets is None:
    states = _einsum("bhnfj,bhnjd->bhnfd", kc, vc, acc)
    states = jax.lax.associative_scan(jnp.add, states, axis=2)  # jnp.cumsum: O(N^2) on CPU
  else:
    chunk_max = offsets[..., -1]                                       # P_c: [B, H, N]
    # Key j's share of its chunk's state, relative to P_c: exp(M_j - P_c) <= 1, applied to the
    # narrower side of the product ([v, 1], not the F features).
    rescaled = vc * jnp.exp(offsets - chunk_max[..., None])[..., None].astype(vc.dtype)
    states = _einsum("bhnfj,bhnjd->bhnfd", kc, rescaled, acc)
    _, states = jax.lax.associative_scan(_rescaled_sum, (chunk_max, states), axis=2)
  states = jnp.pad(states[:, :, :-1], [(0, 0), (0, 0), (1, 0), (0, 0), (0, 0)])
  inter = _einsum("bhnif,bhnfd->bhnid", qc, states.astype(qc.dtype), acc)
  if key_offsets is not None:  # state before chunk c is relative to P_{c-1}; query i to M_i >= it
    before = jnp.pad(chunk_max[..., :-1], [(0, 0), (0, 0), (1, 0)], constant_values=_NO_KEY)
    inter = inter * jnp.exp(jnp.minimum(before[..., None] - offsets, 0))[..., None]
  return _from_chunks(out + inter, length)


def _from_chunks(x, length):
  """[B, H, N, C, X] -> [B, L, H, X]."""
  batch, heads, num_chunks, chunk, width = x.shape
  x = jnp.moveaxis(x, 1, 3).reshape(batch, num_chunks * chunk, heads, width)
  return x[:, :length]


def _rescaled_sum(a, b):
  """Merges (max, state) pairs as online softmax does: both states rescaled to the larger max."""
  (max_a, state_a), (max_b, state_b) = a, b
  new_max = jnp.maximum(max_a, max_b)
  return new_max, (state_a * jnp.exp(max_a - new_max)[..., None, None]
                   + state_b * jnp.exp(max_b - new_max)[..., None, None])


# Offset of a position with no visible key so far (finite: offsets are subtracted from each other).
_NO_KEY = -1e30


# ----------------------------------------------------------------------------
# The kinds.
# ----------------------------------------------------------------------------

def _default_scale(q, scale):
  return 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale


def softmax_attention(q, k, v, *, causal=False, mask=None, rng=None, scale=None, chunk_size=None,
                      implementation=None):
  """Scaled dot-product attention as practitioners run it: `jax.nn.dot_product_attention`.

  implementation: None (XLA's fused kernel; cuDNN flash attention on a GPU for
  16-bit inputs without a padding mask, where cuDNN accepts the shapes), "xla",
  "cudnn", or "reference" (softmax_reference, the hand-written quadratic form).
  Falls back to the reference where the fused call does not apply: q, k, v of
  different dtypes, value size != key size, or float64 (the fused softmax is
  float32). A query with no visible key gets 0, as with every other kind.
  """
  del rng, chunk_size  # chunk_size: accepted so one params dict serves every kind
  if implementation not in (None, "xla", "cudnn", "reference"):
    raise ValueError(f"unknown softmax implementation {implementation!r}")
  if implementation == "reference" or not _fused_applies(q, k, v):
    return softmax_reference(q, k, v, causal=causal, mask=mask, scale=scale)
  fused = lambda impl, m: jax.nn.dot_product_attention(
      q, k, v, mask=m, scale=_default_scale(q, scale), is_causal=causal, implementation=impl)
  if (implementation is None and mask is None and jax.default_backend() == "gpu"
      and q.dtype in (jnp.bfloat16, jnp.float16)):
    try:  # cuDNN rejects unsupported shapes while tracing; XLA's kernel then takes over
      return fused("cudnn", None)
    except Exception:  # pylint: disable=broad-except
      pass
  if mask is None:
    return fused(implementation, None)
  out = fused(implementation, mask[:, None, None, :])
  # The fused softmax spreads a row with no visible key evenly over all keys; ours gives 0.
  return jnp.where(_has_visible_key(q.shape[1], causal, mask)[:, :, None, None], out, 0)


def _fused_applies(q, k, v):
  return (q.dtype == k.dtype == v.dtype and q.dtype in (jnp.float32, jnp.bfloat16, jnp.float16)
          and k.shape == v.shape and q.shape[2] == k.shape[2])


def _has_visible_key(lq, causal, mask):
  """[B, Lq] bool: query i sees at least one key (j <= i when causal)."""
  if not causal:
    return jnp.broadcast_to(mask.any(1, keepdims=True), (mask.shape[0], lq))
  seen = jax.lax.cummax(mask.astype(jnp.int32), axis=1) > 0      # any visible key j' <= j
  return seen[:, jnp.minimum(jnp.arange(lq), mask.shape[1] - 1)]


def softmax_reference(q, k, v, *, causal=False, mask=None, scale=None):
  """The hand-written softmax attention (materialises [B, H, Lq, Lk] scores): the reference.

  Logits, softmax and sums in float32 (or wider) whatever the inputs' dtype, as the fused kernel.
  """
  acc = _accumulator(q.dtype)
  logits = _einsum("bqhd,bkhd->bhqk", q, k, acc) * _default_scale(q, scale)
  allowed = _allowed(q.shape[1], k.shape[1], causal, mask)
  if allowed is not None:
    logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if allowed is not None:  # a query with no visible key gets 0, as the linear kinds do
    weights = jnp.where(allowed, weights, 0)
  return _einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v, acc).astype(v.dtype)


def linear_attention(q, k, v, *, causal=False, mask=None, rng=None, feature_map="elu",
                     chunk_size=None):
  """Linear transformer attention with phi = elu+1 or relu."""
  del rng
  phi = _linear_map(feature_map)
  return linear_attention_from_features(phi(q), phi(k), v, causal=causal, mask=mask,
                                        chunk_size=chunk_size)


def favor_attention(q, k, v, *, causal=False, mask=None, rng=None, num_features=256,
                    orthogonal=True, projection=None, scale=None, chunk_size=None):
  """Performer FAVOR+: positive (orthogonal) random features; needs rng or projection."""
  phi_q, phi_k, key_offsets = _favor_pair(q, k, mask, rng, num_features, orthogonal, projection,
                                          scale, causal)
  return linear_attention_from_features(phi_q, phi_k, v, causal=causal, mask=mask,
                                        chunk_size=chunk_size, key_offsets=key_offsets)


def _exp_feature_attention(features, q, k, v, scale, causal, mask, chunk_size):
  """Linear attention whose features estimate exp(q.k * scale): q, k each scaled by scale^(1/2)."""
  root = math.sqrt(_default_scale(q, scale))
  return linear_attention_from_features(features(q * root), features(k * root), v, causal=causal,
                                        mask=mask, chunk_size=chunk_size)


def taylor_attention(q, k, v, *, causal=False, mask=None, rng=None, order=2, scale=None,
                     chunk_size=None):
  """Order-P Taylor features of exp (dimension sum_m D^m: small D and P only)."""
  del rng
  return _exp_feature_attention(lambda x: taylor_features(x, order), q, k, v, scale, causal, mask, chunk_size)


def limit_attention(q, k, v, *, causal=False, mask=None, rng=None, order=2, scale=None,
                    chunk_size=None):
  """(1 + q.k/P)^P features (dimension (D+1)^P: small D and P only)."""
  del rng
  return _exp_feature_attention(lambda x: limit_features(x, order), q, k, v, scale, causal, mask, chunk_size)


_ATTEND = {
    "softmax": softmax_attention,
    "linear": linear_attention,
    "favor": favor_attention,
    "taylor": taylor_attention,
    "limit": limit_attention,
}


def attend(q, k, v, *, kind="softmax", causal=False, mask=None, rng=None, **kind_params):
  """Attention of any kind: q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv] -> [B, Lq, H, Dv].

  mask: key padding [B, Lk] bool (True = attend). rng: favor's projection draw.
  kind_params: linear (feature_map, chunk_size), favor (num_features, orthogonal,
  projection, scale, chunk_size), taylor / limit (order, scale, chunk_size),
  softmax (scale, implementation). Inputs may be bfloat16: sums are taken in float32.
  """
  if kind not in _ATTEND:
    raise ValueError(f"unknown attention kind {kind!r} (known: {', '.join(KINDS)})")
  return _ATTEND[kind](q, k, v, causal=causal, mask=mask, rng=rng, **kind_params)


# ----------------------------------------------------------------------------
# Exact quadratic-form references: the same kernel as an explicit matrix.
# ----------------------------------------------------------------------------

def kernel_matrix(q, k, *, kind="softmax", rng=None, feature_map="elu", num_features=256,
                  orthogonal=True, projection=None, order=2, scale=None, chunk_size=None,
                  implementation=None):
  """K[b, h, i, j] = K(q_i, k_j) of a kind, evaluated directly ([B, H, Lq, Lk]).

  softmax, taylor and limit come from s = q.k (implicit: no feature map), the
  others from their features. For favor this is the estimate with the given
  draw (or rng), unstabilised: exp(q.k) itself is estimated.
  """
  del chunk_size, implementation
  if kind in ("softmax", "taylor", "limit"):
    dots = jnp.einsum("bqhd,bkhd->bhqk", q, k) * _default_scale(q, scale)
    if kind == "softmax":
      return jnp.exp(dots)
    return taylor_kernel(dots, order) if kind == "taylor" else limit_kernel(dots, order)
  if kind == "linear":
    phi = _linear_map(feature_map)
    phi_q, phi_k = phi(q), phi(k)
  elif kind == "favor":
    root = math.sqrt(_default_scale(q, scale))
    if projection is None:
      projection = favor_projection(rng, num_features, q.shape[-1], orthogonal)
    phi_q, phi_k = favor_features(q * root, projection), favor_features(k * root, projection)
  else:
    raise ValueError(f"unknown attention kind {kind!r} (known: {', '.join(KINDS)})")
  return jnp.einsum("bqhf,bkhf->bhqk", phi_q, phi_k)


def reference_attend(q, k, v, *, kind="softmax", causal=False, mask=None, rng=None, **kind_params):
  """attend() through the explicit [Lq, Lk] kernel matrix and a causal mask (tests only)."""
  if kind == "favor" and kind_params.get("projection") is None:  # draw as favor_attention does
    kind_params = dict(kind_params, projection=favor_projection(
        rng, kind_params.get("num_features", 256), q.shape[-1], kind_params.get("orthogonal", True)))
  if kind == "softmax":  # shift by the row max, as softmax does, so exp cannot overflow
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * _default_scale(q, kind_params.get("scale"))
    allowed = _allowed(q.shape[1], k.shape[1], causal, mask)
    if allowed is not None:
      logits = jnp.where(allowed, logits, -jnp.inf)
    row_max = jnp.max(logits, -1, keepdims=True)
    weights = jnp.exp(logits - jnp.where(jnp.isfinite(row_max), row_max, 0))
  else:
    weights = kernel_matrix(q, k, kind=kind, rng=rng, **kind_params)
    allowed = _allowed(q.shape[1], k.shape[1], causal, mask)
    if allowed is not None:
      weights = jnp.where(allowed, weights, 0)
  num = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
  return _safe_divide(num, weights.sum(-1).transpose(0, 2, 1))


def attention_matrix(q, k, *, kind="softmax", causal=False, mask=None, rng=None, **kind_params):
  """The row-normalised attention matrix [B, H, Lq, Lk] of a kind (for rank analysis)."""
  lk = k.shape[1]
  # Attending to one-hot values returns the attention weights themselves.
  eye = jnp.broadcast_to(jnp.eye(lk, dtype=q.dtype)[None, :, None, :], k.shape[:3] + (lk,))
  out = reference_attend(q, k, eye, kind=kind,
                         causal=causal, mask=mask, rng=rng, **kind_params)
  return out.transpose(0, 2, 1, 3)


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------

def _linear_map(name):
  if name not in LINEAR_FEATURE_MAPS:
    raise ValueError(f"unknown linear feature map {name!r} (known: {', '.join(LINEAR_FEATURE_MAPS)})")
  return elu_features if name == "elu" else relu_features


def _favor_pair(q, k, mask, rng, num_features, orthogonal, projection, scale, causal=False):
  """Stabilised FAVOR+ features (phi_q, phi_k, key_offsets), in float32 or wider.

  Offsets cancel in the normalised attention (see favor_features): per query,
  its largest logit; per key, the largest visible key logit, over the whole
  sequence when not causal (key_offsets None) and a running maximum over
  positions j' <= j when causal (key_offsets [B, L, H], which
  _causal_linear_attention uses to rescale), so that no output depends on a
  later key. Padded keys' logits are -inf before the exp: features exactly 0,
  whatever their size.
  """
  if projection is None:
    if rng is None:
      raise ValueError("favor attention needs rng (or a projection) to draw its random features")
    projection = favor_projection(rng, num_features, q.shape[-1], orthogonal)
  dtype, acc = q.dtype, _accumulator(q.dtype)
  projection = projection.astype(acc)
  root = math.sqrt(_default_scale(q, scale))
  q, k = q.astype(acc) * root, k.astype(acc) * root

  q_logits, k_logits = _favor_logits(q, projection), _favor_logits(k, projection)
  if mask is not None:
    k_logits = jnp.where(mask[:, :, None, None], k_logits, -jnp.inf)
  q_offset = jnp.max(q_logits, -1, keepdims=True)                                # per query
  if causal:
    k_offset = jax.lax.cummax(jnp.max(k_logits, -1), axis=1)                     # [B, L, H]
    k_offset = jax.lax.stop_gradient(jnp.where(jnp.isfinite(k_offset), k_offset, _NO_KEY))
    key_offsets, k_offset = k_offset, k_offset[..., None]
  else:
    k_offset = jnp.max(k_logits, (1, 3), keepdims=True)                          # per (batch, head)
    k_offset = jnp.where(jnp.isfinite(k_offset), k_offset, 0)
    key_offsets = None
  norm = 1.0 / math.sqrt(projection.shape[0])
  phi_q = jnp.exp(q_logits - jax.lax.stop_gradient(q_offset)) * norm
  phi_k = jnp.exp(k_logits - jax.lax.stop_gradient(k_offset)) * norm
  return phi_q.astype(dtype), phi_k.astype(dtype), key_offsets


def _allowed(lq, lk, causal, mask):
  """Boolean [B or 1, 1, Lq, Lk] of visible keys, or None when all are."""
  allowed = None
  if causal:
    allowed = jnp.tril(jnp.ones((lq, lk), bool))[None, None]
  if mask is not None:
    key_ok = mask[:, None, None, :]
    allowed = key_ok if allowed is None else allowed & key_ok
  return allowed


def numerical_rank(matrix, rtol: float = 1e-5) -> int:
  """Number of singular values above rtol * the largest (numpy, host side)."""
  s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
  return int((s > rtol * s[0]).sum()) if s.size and s[0] > 0 else 0
