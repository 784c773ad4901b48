"""The grain input path: training batches read from ArrayRecord files, for data that does not fit in memory.

`make_batch_fn(source, batch_size, seed, decode)` is the streamed twin of
`lmsys.data.make_batch_fn`: the same rows in the same order, read from a
random-access source (a split of `tfds.data_source`, see `lmsys.data.open_tfds`,
or `grain.sources.ArrayRecordDataSource` over ArrayRecord files) instead of
arrays in memory.

- Rows: process p reads only its block of the global batch at step s, the
  record indices `lmsys.data.batch_rows(size, B, seed, s, p, P)`. They are a pure
  function of (seed, step), computable for any step without iterating from 0,
  so a resumed run reads exactly the records an uninterrupted one would, and
  the global batch is the same for any number of processes.
- Not grain's `IndexSampler` with `ShardOptions`: that splits the *records*
  between processes (each samples its own part of the dataset), so the global
  batch, and training, would change with the process count. Not grain's
  `shuffle` either: the in-memory path's numpy permutations (with which the
  published results were made) define the order, and both paths must agree.
  The cost: each epoch's permutation is held in memory (8 bytes a record).
- grain does the reading: a `MapDataset` whose element s is this process's
  batch at step s. Consecutive steps (the trainer's loop) come from one grain
  iterator that reads ahead on threads; any other step starts a new iterator there.
- A batch's records are read in one call, the source's `__getitems__` (grain's
  ArrayRecordDataSource and TFDS's data sources read them in parallel), not
  one `__getitem__` a record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from lmsys import data
from lmsys.config import ConfigError

# grain's MapDataset needs a length: steps of the endless epoch sequence a run can ask for.
_MAX_STEPS = 2**40


def process_batches(source, batch_size: int, seed: int, decode: Callable[[Sequence[Any]], Any],
                    process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """A grain MapDataset whose element s is `decode(records)` of this process's rows at step s."""
  size = len(source)
  if size == 0:
    raise ConfigError("cannot batch an empty dataset")
  data.batch_rows(size, batch_size, seed, 0, process_index, process_count)  # bad sizes fail here
  return grain.MapDataset.range(_MAX_STEPS).map(
      lambda step: decode(read_records(source, data.batch_rows(
          size, batch_size, seed, step, process_index, process_count))))


def read_records(source, indices: Sequence[int]) -> list:
  """Records `indices` of `source`, in that order, read in one call.

  Args:
    source: a random-access source: `len` and `__getitem__`, and `__getitems__` where it reads
      many records at once (grain's `RandomAccessDataSource` protocol).
    indices: record indices (any integer sequence, e.g. `lmsys.data.batch_rows`' array).

  Returns:
    The records, one per index.
  """
  indices = [int(i) for i in indices]
  read_many = getattr(source, "__getitems__", None)
  if read_many is None:  # e.g. a plain list
    return [source[i] for i in indices]
  return list(read_many(indices))


def make_batch_fn(source, batch_size: int, seed: int, decode: Callable[[Sequence[Any]], Any],
                  read_threads: int = 4, read_ahead: int = 4) -> Callable[..., Any]:
  """(step, process_index=0, process_count=1) -> this process's rows at `step`, read from `source`.

  `decode` turns a list of records into the batch (e.g. `lmsys.data.tfds_arrays`).
  `read_ahead` batches are prefetched by `read_threads` grain threads while the
  trainer asks for consecutive steps.
  """
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_ahead)
  datasets, readers = {}, {}  # per (process_index, process_count): the dataset; (next step, iterator)

  def batch_fn(step: int, process_index: int = 0, process_count: int = 1):
    key = (process_index, process_count)
    if key not in datasets:
      datasets[key] = process_batches(source, batch_size, seed, decode, process_index, process_count)
    next_step, reader = readers.get(key, (None, None))
    if next_step != step:
      reader = iter(datasets[key][step:].to_iter_dataset(options))
    readers[key] = (step + 1, reader)
    return next(reader)

  return batch_fn


def feature_moments(source, decode: Callable[[Sequence[Any]], dict], key: str = "x",
                    chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-feature mean and std of `decode(records)[key]` over the whole source, in chunks
  (float64 sums), for standardising streamed data as `lmsys.data.standardize` does arrays."""
  total, total_sq, count = 0.0, 0.0, 0
  for start in range(0, len(source), chunk_size):
    x = decode(source.__getitems__(range(start, min(start + chunk_size, len(source)))))[key]
    total, total_sq = total + x.sum(0, dtype=np.float64), total_sq + np.square(x, dtype=np.float64).sum(0)
    count += len(x)
  if not count:
    raise ConfigError("cannot standardise an empty dataset")
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
  return mean.astype(np.float32), std.astype(np.float32)
