"""Note 4 (kexue 8679 theory, 8706 applications): the Johnson-Lindenstrauss lemma, measured.

Claims (vectors are rows, A has iid N(0, 1/n) entries):
  - norm lemma          P(| |u|^2 - 1 | >= eps) <= 2 exp(-eps^2 n / 8),  u ~ N(0, I/n);
  - orthogonality lemma P(|<u, v>| >= eps)      <= 4 exp(-eps^2 n / 8),  u, v independent;
  - N points, n > 24 log N / eps^2: all pairwise squared distances kept within (1 +- eps) with
    probability >= (N-1)/N (16 log N / eps^2 suffices for existence);
  - applications: LSH by signs of random projections, randomized SVD, head size d > 8.33 log L.

Here: the bounds, exact tails (chi-square algebra, float64 scipy), Monte-Carlo tails, the
worst pairwise distortion of nested random projections (blocked, jitted), SimHash, randomized
SVD, and fitting attention patterns with a given head size.

  python -m experiments.run --config configs/jl.py --workdir runs/jl
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import integrate, stats

from lmsys import data, metrics, timing, trainer
from lmsys.config import ConfigError
from lmsys.data import fewclue as data_fewclue

# ---------------------------------------------------------------- the two lemmas

def norm_tail_bound(n, eps):
  """The note's 2 exp(-eps^2 n / 8) (not clipped at 1: values > 1 say the bound is vacuous)."""
  return 2.0 * np.exp(-np.square(eps) * np.asarray(n, np.float64) / 8.0)


def inner_tail_bound(n, eps):
  """The note's 4 exp(-eps^2 n / 8)."""
  return 4.0 * np.exp(-np.square(eps) * np.asarray(n, np.float64) / 8.0)


def norm_tail_exact(n: int, eps: float) -> float:
  """P(| |u|^2 - 1 | >= eps) exactly: n |u|^2 is chi-square with n degrees of freedom."""
  chi2 = stats.chi2(n)
  return float(chi2.cdf(n * (1.0 - eps)) + chi2.sf(n * (1.0 + eps)))


def inner_tail_exact(n: int, eps: float) -> float:
  """P(|<u, v>| >= eps) exactly, by one numerical integral.

  With z = sqrt(n) u, w = sqrt(n) v: z.w = (a - b) / 2 where a = |z + w|^2 / 2 and
  b = |z - w|^2 / 2 are independent chi-square(n). So P = 2 P(a - b >= 2 n eps)
  = 2 int f_b(t) sf_a(t + 2 n eps) dt.
  """
  chi2 = stats.chi2(n)
  shift, spread = 2.0 * n * eps, 40.0 * math.sqrt(2.0 * n)
  lo, hi = max(0.0, n - spread), n + spread
  value, _ = integrate.quad(lambda t: chi2.pdf(t) * chi2.sf(t + shift), lo, hi,
                            points=[float(n)], limit=400, epsabs=0.0, epsrel=1e-10)
  return float(min(1.0, 2.0 * value))


@functools.partial(jax.jit, static_argnames=("n", "count"))
def _tail_counts(key, eps, n: int, count: int):
  key_u, key_v = jax.random.split(key)
  u = jax.random.normal(key_u, (count, n)) / math.sqrt(n)
  v = jax.random.normal(key_v, (count, n)) / math.sqrt(n)
  norm_deviation = jnp.abs(jnp.sum(u * u, -1) - 1.0)
  inner = jnp.abs(jnp.sum(u * v, -1))
  return ((norm_deviation[:, None] >= eps).sum(0), (inner[:, None] >= eps).sum(0))


def monte_carlo_tails(key, n: int, eps, num_samples: int, max_chunk_elements: int = 1 << 22):
  """Fractions of samples with | |u|^2 - 1 | >= eps and |<u,v>| >= eps, for each eps.

  Returns (norm_tail, inner_tail), float64 arrays shaped like eps; the standard error of
  a fraction p is sqrt(p (1 - p) / num_samples).
  """
  eps = jnp.asarray(np.atleast_1d(eps), jnp.float32)
  chunk = max(1, min(num_samples, max_chunk_elements // n))
  norm_hits = np.zeros(eps.shape, np.int64)
  inner_hits = np.zeros(eps.shape, np.int64)
  done = 0
  while done < num_samples:
    count = min(chunk, num_samples - done)
    a, b = _tail_counts(jax.random.fold_in(key, done), eps, n, count)
    norm_hits += np.asarray(a)
    inner_hits += np.asarray(b)
    done += count
  return norm_hits / num_samples, inner_hits / num_samples


# ---------------------------------------------------------------- N points

def jl_dim_bound(num_points, eps, constant: float = 24.0):
  """The note's n > constant * log N / eps^2 (constant 24: high probability; 16: existence)."""
  return constant * np.log(num_points) / np.square(eps)


def sklearn_min_dim(num_points: int, eps: float) -> int:
  """scikit-learn's 4 log N / (eps^2 / 2 - eps^3 / 3), for comparison."""
  from sklearn.random_projection import johnson_lindenstrauss_min_dim  # pylint: disable=g-import-not-at-top
  return int(johnson_lindenstrauss_min_dim(num_points, eps=eps))


@functools.partial(jax.jit, static_argnames=("width",))
def _block_distortion(x_i, x_j, y_i, y_j, sq_y_i, sq_y_j, i0, j0, num, min_sq_dist, n_grid, width):
  """max over the pairs i < j < num of rows block i0 x block j0 of
  | |y_i - y_j|^2 / (n |x_i - x_j|^2) - 1 |, for each grid n.

  y_* [T, B, n_max + width] are x A with A ~ N(0, 1) (zero-padded): the first n columns give
  the n-dim projection; sq_y_* [T, B, K] the squared norms of those prefixes. n_grid [K]
  increasing in steps <= width. Squared distances by the Gram identity, the projected Gram
  accumulated over the columns between consecutive grid points. Pairs with
  |x_i - x_j|^2 < min_sq_dist are skipped. Returns (worst [T, K], pairs used, pairs skipped).
  """
  hp = jax.lax.Precision.HIGHEST
  rows, cols = i0 + jnp.arange(x_i.shape[0]), j0 + jnp.arange(x_j.shape[0])
  pair = (rows[:, None] < cols[None, :]) & (cols[None, :] < num)
  dx = (jnp.sum(x_i * x_i, -1)[:, None] + jnp.sum(x_j * x_j, -1)[None, :]
        - 2.0 * jnp.matmul(x_i, x_j.T, precision=hp))
  valid = pair & (dx >= min_sq_dist)
  counted = valid.astype(jnp.float32)
  inv_dx = counted / jnp.where(valid, dx, 1.0)  # 0 for pairs not counted: they add |0 - 0| = 0
  starts = jnp.concatenate([jnp.zeros((1,), n_grid.dtype), n_grid[:-1]])
  column = jnp.arange(width)

  def level(gram, k):
    start, stop = starts[k], n_grid[k]
    keep = (column < stop - start).astype(jnp.float32)
    a = jax.lax.dynamic_slice_in_dim(y_i, start, width, axis=2) * keep
    b = jax.lax.dynamic_slice_in_dim(y_j, start, width, axis=2)
    gram = gram + jnp.einsum("tbc,tdc->tbd", a, b, precision=hp)
    dy = sq_y_i[..., k][:, :, None] + sq_y_j[..., k][:, None, :] - 2.0 * gram
    return gram, jnp.max(jnp.abs(dy * (inv_dx / stop) - counted), axis=(1, 2))

  gram = jnp.zeros(y_i.shape[:2] + (y_j.shape[1],), jnp.float32)
  _, worst = jax.lax.scan(level, gram, jnp.arange(n_grid.shape[0]))
  return worst.T, valid.sum(), (pair & ~valid).sum()


def pairwise_distortion(x, gaussian, n_grid, block: int = 512, min_rel_sq_dist: float = 1e-5):
  """max over all pairs i < j of | projected / original squared distance - 1 |, per trial and n.

  x [N, D] (rows are the points); gaussian [T, D, n_max] iid N(0, 1), one matrix per trial;
  the projection to n dims is the first n columns / sqrt(n), so each trial is nested in n.
  n_grid: strictly increasing ints in [1, n_max]. Pairs closer than
  min_rel_sq_dist * mean |x - mean|^2 (float32 cannot resolve their ratio) are skipped, counted.
  Returns (distortion [T, K], pairs_used, pairs_skipped).
  """
  n_grid = np.asarray(n_grid, np.int32)
  if np.any(np.diff(n_grid) <= 0) or n_grid[0] < 1 or n_grid[-1] > gaussian.shape[-1]:
    raise ValueError(f"n_grid must increase strictly within [1, {gaussian.shape[-1]}]: {n_grid}")
  width = int(np.max(np.diff(n_grid, prepend=0)))
  x = np.asarray(x, np.float32)
  x = x - x.mean(0)  # distances unchanged; smaller norms, less cancellation in the Gram identity
  num = len(x)
  block = min(block, -(-num // 8) * 8)
  pad = (-num) % block
  min_sq_dist = min_rel_sq_dist * float(np.mean(np.sum(x * x, -1)))
  xp = jnp.asarray(np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)]))
  y = jnp.einsum("nd,tdm->tnm", xp, jnp.asarray(gaussian, jnp.float32),
                 precision=jax.lax.Precision.HIGHEST)
  sq_y = jnp.cumsum(y * y, -1)[..., n_grid - 1]
  y = jnp.pad(y, ((0, 0), (0, 0), (0, width)))
  grid = jnp.asarray(n_grid)
  worst, used, skipped = [], 0, 0
  for i0 in range(0, num + pad, block):
    for j0 in range(i0, num + pad, block):
      w, u, s = _block_distortion(xp[i0:i0 + block], xp[j0:j0 + block], y[:, i0:i0 + block],
                                  y[:, j0:j0 + block], sq_y[:, i0:i0 + block], sq_y[:, j0:j0 + block],
                                  i0, j0, num, min_sq_dist, grid, width)
      worst.append(w)
      used, skipped = used + int(u), skipped + int(s)
  return np.max(np.stack(worst), 0), used, skipped


def smallest_good_dim(n_grid, distortion, eps):
  """The smallest grid n from which on every larger grid n keeps all pairs within (1 +- eps);
  None if even the largest does not."""
  good = np.asarray(distortion) < eps
  if not good[-1]:
    return None
  bad = np.nonzero(~good)[0]
  return int(n_grid[0] if len(bad) == 0 else n_grid[bad[-1] + 1])


# ---------------------------------------------------------------- applications

def simhash_bits(x, gaussian):
  """LSH by signs of random projections: bit k of x is [x . g_k > 0]."""
  return jnp.matmul(x, gaussian, precision=jax.lax.Precision.HIGHEST) > 0


def simhash_cosine_errors(key, x, pairs, bits_grid):
  """Cosine of each pair estimated as cos(pi * hamming / k) from the first k sign bits.

  P(bit differs) = angle / pi (Charikar 2002), so the angle estimate has standard deviation
  sqrt(angle (pi - angle) / k). Returns per grid k: RMSE of the cosine estimate, RMSE of
  the angle estimate, and the theory's RMS standard deviation of the angle.
  """
  x = jnp.asarray(x, jnp.float32)
  max_bits = int(max(bits_grid))
  gaussian = jax.random.normal(key, (x.shape[1], max_bits))
  bits = simhash_bits(x, gaussian)
  a, b = x[pairs[:, 0]], x[pairs[:, 1]]
  cos_true = jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1))
  angle_true = jnp.arccos(jnp.clip(cos_true, -1.0, 1.0))
  differ = jnp.cumsum(bits[pairs[:, 0]] != bits[pairs[:, 1]], axis=-1)
  rows = []
  for k in bits_grid:
    angle_hat = jnp.pi * differ[:, k - 1] / k
    rows.append({
        "bits": int(k),
        "cosine_rmse": float(jnp.sqrt(jnp.mean((jnp.cos(angle_hat) - cos_true) ** 2))),
        "angle_rmse": float(jnp.sqrt(jnp.mean((angle_hat - angle_true) ** 2))),
        "angle_rmse_theory": float(jnp.sqrt(jnp.mean(angle_true * (jnp.pi - angle_true) / k))),
    })
  return rows


def randomized_svd(key, x, rank: int, sketch_size: int, power_iters: int = 0):
  """Halko-Martinsson-Tropp: the range of x is found from x Omega, Omega a Gaussian sketch.

  Returns (u [N, rank], s [rank], vt [rank, D]).
  """
  hp = jax.lax.Precision.HIGHEST
  omega = jax.random.normal(key, (x.shape[1], sketch_size), x.dtype)
  q, _ = jnp.linalg.qr(jnp.matmul(x, omega, precision=hp))
  for _ in range(power_iters):  # re-orthonormalise each pass: float32 loses small directions otherwise
    q, _ = jnp.linalg.qr(jnp.matmul(x.T, q, precision=hp))
    q, _ = jnp.linalg.qr(jnp.matmul(x, q, precision=hp))
  u_small, s, vt = jnp.linalg.svd(jnp.matmul(q.T, x, precision=hp), full_matrices=False)
  return jnp.matmul(q, u_small[:, :rank], precision=hp), s[:rank], vt[:rank]


def low_rank_error(x, u, s, vt):
  """Frobenius norm of x - u diag(s) vt."""
  return float(jnp.linalg.norm(x - jnp.matmul(u * s, vt, precision=jax.lax.Precision.HIGHEST)))


# ---------------------------------------------------------------- head size

def attention_logits(params, inverse_temperature, head_size):
  """Cosine attention: tau <q_i / |q_i|, k_j / |k_j|>, on the first head_size columns.

  Unit rows bound the logits, so a sharp pattern needs nearly orthogonal vectors, which is
  where JL's log L comes in (with free norms, d = 2 already realises any argmax pattern:
  keys on a circle). Columns >= head_size are masked so that nearby sizes share one compile.
  """
  mask = (jnp.arange(params["q"].shape[-1]) < head_size).astype(params["q"].dtype)
  q, k = params["q"] * mask, params["k"] * mask
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
  return inverse_temperature * q @ k.T


def fit_attention_pattern(key, targets, head_size: int, inverse_temperature: float,
                          optimizer: optax.GradientTransformation, num_steps: int):
  """Fits free queries/keys [L, head_size] so that row i of softmax(logits) puts its weight on
  key targets[i]; full-batch steps of `optimizer` on the mean cross-entropy.

  Returns {"target_weight": mean attention weight on the target key, "top1": fraction of rows
  whose argmax is the target, "loss"} after training.
  """
  length = targets.shape[0]
  width = max(8, 1 << (int(head_size) - 1).bit_length())  # power-of-two bucket, masked to head_size
  key_q, key_k = jax.random.split(key)
  params = {"q": jax.random.normal(key_q, (length, width)),
            "k": jax.random.normal(key_k, (length, width))}
  return _fit_attention(params, jnp.asarray(targets), float(inverse_temperature), int(head_size),
                        optimizer, num_steps)


@functools.partial(jax.jit, static_argnames=("optimizer", "num_steps"))
def _fit_attention(params, targets, inverse_temperature, head_size, optimizer, num_steps):
  def loss_fn(p):
    logits = attention_logits(p, inverse_temperature, head_size)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  def step(carry, _):
    p, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), loss

  (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
  logits = attention_logits(params, inverse_temperature, head_size)
  weights = jax.nn.softmax(logits, -1)
  rows = jnp.arange(targets.shape[0])
  return {"target_weight": weights[rows, targets].mean(),
          "top1": (logits.argmax(-1) == targets).mean(),
          "loss": loss_fn(params)}


def smallest_head_size(fit, lo: int, hi: int):
  """Smallest d in [lo, hi] with fit(d) True, assuming success is monotone in d: doubling
  from lo (cheap small fits first), then bisection. Returns (d or None, {d: fit(d)})."""
  tried = {}

  def ok(d):
    if d not in tried:
      tried[d] = bool(fit(d))
    return tried[d]

  good = lo
  while not ok(good):
    if good >= hi:
      return None, tried
    lo, good = good + 1, min(2 * good, hi)
  while lo < good:
    mid = (lo + good) // 2
    if ok(mid):
      good = mid
    else:
      lo = mid + 1
  return good, tried


# ---------------------------------------------------------------- the experiment's sections (configs/jl.py)
#
# Five sections, each a results table and a figure: lemma tails, random projection of N real
# vectors, SimHash, randomized SVD, and the head-size curve. Every number is computed here;
# the bounds are the note's formulas, evaluated.

SETS = ("gaussian", "fashion_mnist", "fewclue/tnews")


# ---------------------------------------------------------------- data

def load_points(config, name: str, num: int, sources: dict) -> np.ndarray:
  """num distinct real vectors (rows) of set `name`, float32.

  `sources` (one dict per run, passed explicitly) keeps each set's full array
  once it is read, since several sections sample the same set.
  """
  rng = np.random.default_rng(config.seed)
  if name == "gaussian":
    return rng.normal(size=(num, config.data.gaussian_dim)).astype(np.float32)
  if name not in sources:
    if name == "fashion_mnist":
      x = data.load_arrays("fashion_mnist", config.data.data_dir or None)["train"]["x"]
    else:
      x = _text_vectors(config, name.split("/", 1)[1])
    sources[name] = np.unique(x, axis=0)  # exact duplicates have no distance ratio
  x = sources[name]
  if len(x) < num:
    raise ConfigError(f"{name}: only {len(x)} distinct vectors, {num} requested")
  return x[np.sort(rng.permutation(len(x))[:num])]


def _text_vectors(config, task: str) -> np.ndarray:
  """TF-IDF + SVD features of the task's unlabeled sentences (the labelled splits are too small)."""
  records = data.load_fewclue(task, "unlabeled", config.data.data_dir or None)
  sentences = [data.fewclue_text(task, r) for r in records]
  features, _ = data_fewclue.fewclue_features(sentences, [], (), use_unlabeled=False, seed=config.seed,
                                              **dict(config.data.text))
  return features[0]


# ---------------------------------------------------------------- sections

def run_tails(config, writer):
  """Lemma tails per (n, eps): Monte-Carlo, exact and the bound, and the Monte-Carlo excess
  over the bound in standard errors."""
  key = jax.random.key(config.seed)
  rows = {}
  for n in config.tails.n:
    norm_mc, inner_mc = monte_carlo_tails(jax.random.fold_in(key, n), n, config.tails.eps, config.tails.samples)
    for eps, p_norm, p_inner in zip(config.tails.eps, norm_mc, inner_mc):
      row = {"n": n, "eps": eps,
             "norm_mc": p_norm, "norm_exact": norm_tail_exact(n, eps),
             "norm_bound": float(norm_tail_bound(n, eps)),
             "inner_mc": p_inner, "inner_exact": inner_tail_exact(n, eps),
             "inner_bound": float(inner_tail_bound(n, eps))}
      # Excess over the bound in Monte-Carlo standard errors (positive = the bound is broken).
      for lemma in ("norm", "inner"):
        p = row[f"{lemma}_exact"]
        se = math.sqrt(max(p * (1 - p), 1.0 / config.tails.samples) / config.tails.samples)
        row[f"{lemma}_mc_excess_se"] = (row[f"{lemma}_mc"] - row[f"{lemma}_bound"]) / se
      rows[f"n={n},eps={eps}"] = row
      writer.write(n, f"tails/eps={eps}", row)
  return rows


def projection_grid(num: int, eps: float, points: int):
  """(dimensions to evaluate, ceil(24 log N / eps^2)): `points` steps up to the bound, plus the
  16 log N / eps^2 bound and scikit-learn's johnson_lindenstrauss_min_dim."""
  top = int(math.ceil(jl_dim_bound(num, eps, 24.0)))
  extra = [int(math.ceil(jl_dim_bound(num, eps, 16.0))), sklearn_min_dim(num, eps)]
  grid = np.unique(np.concatenate([np.linspace(0, top, points + 1)[1:].round().astype(int),
                                   [e for e in extra if e <= top]]))
  return grid[grid >= 1], top


def run_projection(config, writer, sources):
  """Worst pairwise distortion of nested random projections per (set, N, eps): success rates at
  the 24 and 16 log N / eps^2 bounds, the smallest good dimension per trial; and the curves."""
  rows, curves = {}, {}
  for set_index, name in enumerate(config.data.sets):
    for num, eps, trials in config.projection.cases:
      x = load_points(config, name, num, sources)
      grid, top = projection_grid(num, eps, config.projection.grid_points)
      key = jax.random.fold_in(jax.random.key(config.seed + 1), set_index * 1_000_003 + num * 7 + int(eps * 1000))
      gaussian = jax.random.normal(key, (trials, x.shape[1], top))
      with timing.Stopwatch() as watch:
        worst, used, skipped = pairwise_distortion(x, gaussian, grid, block=config.projection.block)
      bound16 = int(math.ceil(jl_dim_bound(num, eps, 16.0)))
      at = lambda n: worst[:, int(np.searchsorted(grid, n))]
      good = [smallest_good_dim(grid, w, eps) for w in worst]
      found = [g for g in good if g is not None]
      row = {"dataset": name, "N": num, "eps": eps, "dim": x.shape[1], "trials": trials,
             "bound_24logN": top, "bound_16logN": bound16, "sklearn_min_dim": sklearn_min_dim(num, eps),
             "success_at_24logN": float(np.mean(at(top) < eps)),
             "success_at_16logN": float(np.mean(at(bound16) < eps)),
             "worst_distortion_at_24logN": float(np.max(at(top))),
             "empirical_min_n_median": float(np.median(found)) if found else None,
             "empirical_min_n_max": max(found) if len(found) == trials else None,
             "grid_step": float(top / config.projection.grid_points),
             "pairs": used, "pairs_skipped_too_close": skipped, "seconds": watch.seconds}
      rows[f"{name},N={num},eps={eps}"] = row
      curves[(name, num, eps)] = (grid, worst)
      writer.write(num, f"projection/{name}/eps={eps}", {k: v for k, v in row.items() if k != "dataset"})
  return rows, curves


def run_lsh(config, writer, sources):
  """SimHash: cosine and angle errors per number of bits on centred real vectors."""
  x = load_points(config, config.lsh.dataset, config.lsh.points, sources)
  x = x - x.mean(0)  # centred: cosines spread over (-1, 1) instead of all near 1 for images
  rng = np.random.default_rng(config.seed + 2)
  pairs = rng.integers(0, len(x), size=(config.lsh.pairs, 2))
  pairs = pairs[pairs[:, 0] != pairs[:, 1]]
  rows = simhash_cosine_errors(jax.random.key(config.seed + 2), x, pairs, config.lsh.bits)
  for row in rows:
    writer.write(row["bits"], "lsh", row)
  return {f"bits={r['bits']}": r for r in rows}


def run_svd(config, writer, sources):
  """Randomized SVD's error over the best rank-k error, per power iterations and sketch size."""
  x = load_points(config, config.svd.dataset, config.svd.points, sources)
  x = jnp.asarray(x - x.mean(0))
  rank = config.svd.rank
  with timing.Stopwatch() as exact_watch:
    singular = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  best = float(np.sqrt(np.sum(singular[rank:] ** 2)))
  rows = {}
  for q in config.svd.power_iters:
    for sketch in config.svd.sketch:
      with timing.Stopwatch() as watch:
        u, s, vt = randomized_svd(jax.random.key(config.seed + 3), x, rank, sketch, q)
        error = low_rank_error(x, u, s, vt)
      row = {"power_iters": q, "sketch": sketch, "rank": rank, "error_over_best": error / best,
             "top_singular_value_rel_error": float(abs(s[0] - singular[0]) / singular[0]),
             "seconds": watch.seconds, "exact_svd_seconds_float64": exact_watch.seconds}
      rows[f"q={q},sketch={sketch}"] = row
      writer.write(sketch, f"svd/power_iters={q}", row)
  return rows


def run_head_size(config, writer):
  """The smallest head size that fits a random attention pattern, per sequence length L."""
  head = config.head
  optimizer = trainer.make_optimizer(config.optimizer, head.steps)
  rows, lower = {}, 1
  for length in head.lengths:
    targets = jax.random.randint(jax.random.fold_in(jax.random.key(config.seed + 4), length),
                                 (length,), 0, length)
    tau = head.inverse_temperature_per_log_length * math.log(length)
    results = {}

    def fit(d, targets=targets, tau=tau, results=results):
      out = fit_attention_pattern(jax.random.key(config.seed + 5), targets, d, tau, optimizer, head.steps)
      results[d] = {k: float(v) for k, v in out.items()}
      return results[d]["target_weight"] >= head.success_weight

    with timing.Stopwatch() as watch:
      d_min, _ = smallest_head_size(fit, lower, head.max_size)
    # Longer sequences need about as many dimensions or more: start the next search just below.
    lower = max(1, d_min - 2) if d_min else lower
    row = {"L": length, "tau": tau, "d_min": d_min, "note_8.33_logL": 8.33 * math.log(length),
           "d_min_over_logL": d_min / math.log(length) if d_min else None,
           "target_weight_at_d_min": results[d_min]["target_weight"] if d_min else None,
           "top1_at_d_min": results[d_min]["top1"] if d_min else None,
           "target_weight_at_d_min_minus_1": results.get((d_min or 0) - 1, {}).get("target_weight"),
           "fits": len(results), "seconds": watch.seconds}
    rows[f"L={length}"] = row
    writer.write(length, "head_size", row)
  return rows


# ---------------------------------------------------------------- figures

def tails_figure(rows):
  plt = metrics.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  eps_values = sorted({r["eps"] for r in rows.values()})
  for ax, lemma, title in ((axes[0], "norm", "P(| |u|^2 - 1 | >= eps)"), (axes[1], "inner", "P(|<u,v>| >= eps)")):
    for i, eps in enumerate(eps_values):
      sel = [r for r in rows.values() if r["eps"] == eps]
      n = [r["n"] for r in sel]
      color = f"C{i}"
      ax.plot(n, [r[f"{lemma}_bound"] for r in sel], "--", color=color, label=f"bound eps={eps}")
      ax.plot(n, [r[f"{lemma}_exact"] for r in sel], "-", color=color, label=f"exact eps={eps}")
      ax.plot(n, [max(r[f"{lemma}_mc"], 1e-12) for r in sel], "o", color=color, label=f"Monte-Carlo eps={eps}")
    ax.set(xscale="log", yscale="log", xlabel="n", title=title, ylim=(1e-8, 5))
  axes[0].legend(fontsize=7)
  return fig


def projection_figure(curves):
  plt = metrics.pyplot()
  cases = sorted({(num, eps) for _, num, eps in curves})
  names = sorted({name for name, _, _ in curves})
  fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
  for ax, (num, eps) in zip(axes[0], cases):
    for (name, n2, e2), (grid, worst) in sorted(curves.items()):
      if (n2, e2) == (num, eps):
        ax.plot(grid, np.median(worst, 0), color=f"C{names.index(name)}", label=f"{name} (median of trials)")
    ax.axhline(eps, color="k", lw=0.8)
    for const, style in ((16.0, ":"), (24.0, "--")):
      ax.axvline(jl_dim_bound(num, eps, const), color="gray", ls=style, label=f"{const:g} log N / eps^2")
    ax.axvline(sklearn_min_dim(num, eps), color="r", ls="-.", lw=0.8, label="sklearn")
    ax.set(yscale="log", xlabel="projected dim n", title=f"N={num}, eps={eps}", ylabel="max pair distortion")
  axes[0][0].legend(fontsize=7)
  return fig


def lsh_svd_figure(lsh_rows, svd_rows):
  plt = metrics.pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  bits = [r["bits"] for r in lsh_rows.values()]
  a.plot(bits, [r["angle_rmse"] for r in lsh_rows.values()], "o-", label="angle RMSE")
  a.plot(bits, [r["angle_rmse_theory"] for r in lsh_rows.values()], "--", label="theory sqrt(t(pi-t)/k)")
  a.plot(bits, [r["cosine_rmse"] for r in lsh_rows.values()], "s-", label="cosine RMSE")
  a.set(xscale="log", yscale="log", xlabel="bits k", title="SimHash")
  a.legend(fontsize=8)
  for q in sorted({r["power_iters"] for r in svd_rows.values()}):
    sel = [r for r in svd_rows.values() if r["power_iters"] == q]
    b.plot([r["sketch"] for r in sel], [r["error_over_best"] - 1 for r in sel], "o-", label=f"power iters {q}")
  b.set(yscale="log", xlabel="sketch size", ylabel="error / best rank-k error - 1", title="randomized SVD")
  b.legend(fontsize=8)
  return fig


def head_figure(rows):
  plt = metrics.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.6))
  lengths = np.array([r["L"] for r in rows.values()])
  ax.plot(lengths, [r["d_min"] or np.nan for r in rows.values()], "o-", label="smallest d fitting (measured)")
  ax.plot(lengths, 8.33 * np.log(lengths), "--", label="8.33 log L (note)")
  ax.set(xscale="log", xlabel="sequence length L", ylabel="head size d")
  ax.legend(fontsize=8)
  return fig
