"""Batches as pure functions of (seed, step), and fixed-size evaluation batches.

`make_batch_fn(arrays, batch_size, seed)` gives the trainer a pure function
of (seed, step): batch order never depends on the history of the process, so
a resumed run sees exactly the batches an uninterrupted one would. Each process
builds only its own rows of the global batch (`batch_rows`); data that does not
fit in memory takes the same rows from ArrayRecord files through grain
(`lmsys.data.grain_source`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from lmsys.config import ConfigError


def standardize(train_x: np.ndarray, *others: np.ndarray, eps: float = 1e-6):
  """Per-feature mean/std fitted on train, applied to all."""
  mean, std = train_x.mean(0), train_x.std(0)
  std = np.where(std < eps, 1.0, std)  # constant-on-train features stay finite on test
  return tuple((a - mean) / std for a in (train_x, *others))


def subsample(arrays: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
  """A fixed random subset of n rows (all rows if n >= N)."""
  size = len(next(iter(arrays.values())))
  if n >= size:
    return arrays
  idx = np.sort(np.random.default_rng(seed).permutation(size)[:n])
  return {k: v[idx] for k, v in arrays.items()}


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
  """Cached: consecutive steps share an epoch, and a 60k permutation costs ~1 ms."""
  perm = np.random.default_rng([seed, epoch]).permutation(size)
  perm.flags.writeable = False
  return perm


def batch_rows(size: int, batch_size: int, seed: int, step: int,
               process_index: int = 0, process_count: int = 1) -> np.ndarray:
  """Dataset indices of process `process_index`'s rows of the global batch at `step`.

  The global batch is positions [step*B, (step+1)*B) of the endless sequence of
  epochs, each epoch a permutation seeded by (seed, epoch); process p of P takes
  the p-th contiguous block of B/P positions. So the global batch (and training)
  is the same for any number of processes, and each computes only its own rows.
  """
  if batch_size % process_count:
    raise ConfigError(f"batch size {batch_size} is not divisible by the {process_count} processes")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
  rows = batch_size // process_count
  start = step * batch_size + process_index * rows
  positions = np.arange(start, start + rows)
  epochs, offsets = positions // size, positions % size
  idx = np.empty(rows, dtype=np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    idx[sel] = epoch_permutation(seed, int(epoch), size)[offsets[sel]]
  return idx


def make_batch_fn(arrays: dict[str, np.ndarray], batch_size: int, seed: int
                  ) -> Callable[..., dict[str, np.ndarray]]:
  """(step, process_index=0, process_count=1) -> this process's rows of the global
  batch at `step` (see `batch_rows`); the trainer passes the process arguments."""
  size = len(next(iter(arrays.values())))
  if size == 0:
    raise ConfigError("cannot batch an empty dataset")

  def batch_fn(step: int, process_index: int = 0, process_count: int = 1) -> dict[str, np.ndarray]:
    idx = batch_rows(size, batch_size, seed, step, process_index, process_count)
    return {k: v[idx] for k, v in arrays.items()}

  return batch_fn


def map_batches(fn: Callable[[dict, int], dict], arrays: dict[str, np.ndarray], batch_size: int
                ) -> dict[str, np.ndarray]:
  """Per-example outputs of `fn(batch, offset)` over all rows, in fixed-size batches.

  The last batch is padded with zeros up to the batch size and the padding's
  outputs dropped, so a jitted `fn` compiles once for the whole set (not once
  more for a ragged last batch). `fn` returns a dict of arrays whose leading
  axis is the batch; `offset` is the first row's index (e.g. to fold into a key).
  """
  size = len(next(iter(arrays.values())))
  if size == 0:
    raise ConfigError("cannot evaluate on an empty set")
  pieces = []
  for start in range(0, size, batch_size):
    batch = {k: v[start:start + batch_size] for k, v in arrays.items()}
    real = len(next(iter(batch.values())))
    if real < batch_size:
      batch = {k: np.concatenate([v, np.zeros((batch_size - real, *v.shape[1:]), v.dtype)])
               for k, v in batch.items()}
    out = fn(batch, start)
    pieces.append({k: np.asarray(v)[:real] for k, v in out.items()})
  return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
