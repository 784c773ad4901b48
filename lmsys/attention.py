"""Attention of every kind through one call (notes 2 and 3: kexue 8610, 8601).

    out = attend(q, k, v, kind="favor", causal=True, mask=key_padding, rng=key,
                 num_features=256)

q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv]; mask: [B, Lk] bool, True
for real keys. Every kind is "normalised kernel attention":

    out_i = sum_j K(q_i, k_j) v_j / sum_j K(q_i, k_j)     (j <= i when causal)

- softmax: K = exp(q.k * scale), scale = 1/sqrt(D): the reference, quadratic.
- linear:  K = phi(q).phi(k), phi = elu+1 or relu (Katharopoulos et al. 2020).
- favor:   Performer FAVOR+, phi(x) = m^-1/2 exp(w_i.x - |x|^2/2), w ~ N(0, I)
           (orthogonal blocks by default): an unbiased estimate of exp(q.k).
- taylor:  exp(q.k) ~ sum_{m<=P} (q.k)^m / m!, features (1, x, x⊗x/sqrt 2!, ...).
- limit:   exp(q.k) ~ (1 + q.k/P)^P, features ⊗^P (1, x/sqrt P).

favor, taylor and limit approximate softmax attention: they see q and k scaled
by scale^(1/2) each, so their kernel estimates exp(q.k * scale).

Every kernel kind runs as linear attention, phi(q) (sum_j phi(k_j)^T v_j), in
O(L) time and memory; causal runs chunk by chunk (quadratic inside a chunk of
`chunk_size`, a running state sum phi(k)^T v, sum phi(k) carried by lax.scan),
never through an L x L mask. `reference_attend` evaluates the same kernel as
an explicit L x L matrix (taylor and limit implicitly through powers of q.k),
which is what the tests compare against.

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

def _safe_divide(num, den):
  """num / den with 0/0 -> 0 (a query with no visible key, or all-zero relu features)."""
  return num / jnp.where(den == 0, 1, den)[..., None]


def _key_mask(mask, k):
  """[B, Lk] bool -> [B, Lk, 1, 1] float of the keys' dtype (all ones if None)."""
  if mask is None:
    return jnp.ones(k.shape[:2] + (1, 1), k.dtype)
  return mask.astype(k.dtype)[:, :, None, None]


def linear_attention_from_features(phi_q, phi_k, v, *, causal=False, mask=None, chunk_size=64):
  """out_i = phi(q_i) sum_j phi(k_j)^T v_j / phi(q_i) sum_j phi(k_j), j <= i if causal.

  phi_q [B, Lq, H, F], phi_k [B, Lk, H, F], v [B, Lk, H, Dv].
  """
  phi_k = phi_k * _key_mask(mask, phi_k)
  if not causal:
    kv = jnp.einsum("blhf,blhd->bhfd", phi_k, v)
    normaliser = jnp.einsum("blhf,bhf->blh", phi_q, phi_k.sum(1))
    return _safe_divide(jnp.einsum("blhf,bhfd->blhd", phi_q, kv), normaliser)
  return _causal_linear_attention(phi_q, phi_k, v, chunk_size)


def _causal_linear_attention(phi_q, phi_k, v, chunk_size):
  """Chunked causal linear attention: exact, O(L) memory, no L x L array.

  Inside a chunk of C positions the C x C masked product is taken directly;
  the keys of earlier chunks enter through the state S = sum phi(k)^T v and
  z = sum phi(k), updated once per chunk by lax.scan.
  """
  batch, length, heads, num_feat = phi_q.shape
  if phi_k.shape[1] != length:
    raise ValueError(f"causal attention needs Lq == Lk, got {length} and {phi_k.shape[1]}")
  value_dim = v.shape[-1]
  chunk = min(chunk_size, length)
  padded = -(-length // chunk) * chunk
  pad = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
  num_chunks = padded // chunk

  def to_chunks(x):  # [B, L, H, X] -> [N, B, H, C, X]
    x = jnp.pad(x, pad).reshape(batch, num_chunks, chunk, heads, x.shape[-1])
    return x.transpose(1, 0, 3, 2, 4)

  qc, kc, vc = to_chunks(phi_q), to_chunks(phi_k), to_chunks(v)
  # Intra-chunk part, for all chunks at once: memory L * C, not L^2.
  tril = jnp.tril(jnp.ones((chunk, chunk), phi_q.dtype))
  scores = jnp.einsum("nbhif,nbhjf->nbhij", qc, kc) * tril
  intra_num = jnp.einsum("nbhij,nbhjd->nbhid", scores, vc)
  intra_den = scores.sum(-1)

  def step(state, chunk_inputs):
    s, z = state
    q, k, v = chunk_inputs
    num = jnp.einsum("bhif,bhfd->bhid", q, s)
    den = jnp.einsum("bhif,bhf->bhi", q, z)
    s = s + jnp.einsum("bhjf,bhjd->bhfd", k, v)
    z = z + k.sum(-2)
    return (s, z), (num, den)

  init = (jnp.zeros((batch, heads, num_feat, value_dim), phi_q.dtype),
          jnp.zeros((batch, heads, num_feat), phi_q.dtype))
  _, (inter_num, inter_den) = jax.lax.scan(step, init, (qc, kc, vc))
  out = _safe_divide(intra_num + inter_num, intra_den + inter_den)  # [N, B, H, C, Dv]
  out = out.transpose(1, 0, 3, 2, 4).reshape(batch, padded, heads, value_dim)
  return out[:, :length]


# ----------------------------------------------------------------------------
# The kinds.
# ----------------------------------------------------------------------------

def _default_scale(q, scale):
  return 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale


def softmax_attention(q, k, v, *, causal=False, mask=None, rng=None, scale=None, chunk_size=None):
  """Standard scaled dot-product attention (quadratic, the reference)."""
  del rng, chunk_size  # chunk_size: accepted so one params dict serves every kind
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * _default_scale(q, scale)
  allowed = _allowed(q.shape[1], k.shape[1], causal, mask)
  if allowed is not None:
    logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if allowed is not None:  # a query with no visible key gets 0, as the linear kinds do
    weights = jnp.where(allowed, weights, 0)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def linear_attention(q, k, v, *, causal=False, mask=None, rng=None, feature_map="elu",
                     chunk_size=64):
  """Linear transformer attention with phi = elu+1 or relu."""
  del rng
  phi = _linear_map(feature_map)
  return linear_attention_from_features(phi(q), phi(k), v, causal=causal, mask=mask,
                                        chunk_size=chunk_size)


def favor_attention(q, k, v, *, causal=False, mask=None, rng=None, num_features=256,
                    orthogonal=True, projection=None, scale=None, chunk_size=64):
  """Performer FAVOR+: positive (orthogonal) random features; needs rng or projection."""
  phi_q, phi_k = _favor_pair(q, k, mask, rng, num_features, orthogonal, projection, scale)
  return linear_attention_from_features(phi_q, phi_k, v, causal=causal, mask=mask,
                                        chunk_size=chunk_size)


def taylor_attention(q, k, v, *, causal=False, mask=None, rng=None, order=2, scale=None,
                     chunk_size=64):
  """Order-P Taylor features of exp (dimension sum_m D^m: small D and P only)."""
  del rng
  root = math.sqrt(_default_scale(q, scale))
  return linear_attention_from_features(
      taylor_features(q * root, order), taylor_features(k * root, order), v,
      causal=causal, mask=mask, chunk_size=chunk_size)


def limit_attention(q, k, v, *, causal=False, mask=None, rng=None, order=2, scale=None,
                    chunk_size=64):
  """(1 + q.k/P)^P features (dimension (D+1)^P: small D and P only)."""
  del rng
  root = math.sqrt(_default_scale(q, scale))
  return linear_attention_from_features(
      limit_features(q * root, order), limit_features(k * root, order), v,
      causal=causal, mask=mask, chunk_size=chunk_size)


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
  softmax (scale).
  """
  if kind not in _ATTEND:
    raise ValueError(f"unknown attention kind {kind!r} (known: {', '.join(KINDS)})")
  return _ATTEND[kind](q, k, v, causal=causal, mask=mask, rng=rng, **kind_params)


# ----------------------------------------------------------------------------
# Exact quadratic-form references: the same kernel as an explicit matrix.
# ----------------------------------------------------------------------------

def kernel_matrix(q, k, *, kind="softmax", rng=None, feature_map="elu", num_features=256,
                  orthogonal=True, projection=None, order=2, scale=None, chunk_size=None):
  """K[b, h, i, j] = K(q_i, k_j) of a kind, evaluated directly ([B, H, Lq, Lk]).

  softmax, taylor and limit come from s = q.k (implicit: no feature map), the
  others from their features. For favor this is the estimate with the given
  draw (or rng), unstabilised: exp(q.k) itself is estimated.
  """
  del chunk_size
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


def _favor_pair(q, k, mask, rng, num_features, orthogonal, projection, scale):
  """Stabilised FAVOR+ features of queries and keys (offsets cancel, see favor_features)."""
  if projection is None:
    if rng is None:
      raise ValueError("favor attention needs rng (or a projection) to draw its random features")
    projection = favor_projection(rng, num_features, q.shape[-1], orthogonal)
  projection = projection.astype(q.dtype)
  root = math.sqrt(_default_scale(q, scale))
  q, k = q * root, k * root

  q_logits, k_logits = _favor_logits(q, projection), _favor_logits(k, projection)
  q_offset = jnp.max(q_logits, -1, keepdims=True)                                # per query
  visible = k_logits if mask is None else jnp.where(mask[:, :, None, None], k_logits, -jnp.inf)
  k_offset = jnp.max(visible, (1, 3), keepdims=True)                            # per (batch, head)
  k_offset = jnp.where(jnp.isfinite(k_offset), k_offset, 0)
  norm = 1.0 / math.sqrt(projection.shape[0])
  return (jnp.exp(q_logits - jax.lax.stop_gradient(q_offset)) * norm,
          jnp.exp(k_logits - jax.lax.stop_gradient(k_offset)) * norm)


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
