"""The grain input path reads each batch's records in one `__getitems__` call."""

import threading

import numpy as np

from lmsys import data
from lmsys.data import grain_source

SIZE = 30


class CountingSource:
  """A random-access source of {'x', 'y'} records that counts how it is read."""

  def __init__(self):
    self.x = np.arange(SIZE * 2, dtype=np.float32).reshape(SIZE, 2)
    self.y = np.arange(SIZE, dtype=np.int32) % 3
    self.single_reads, self.batch_reads = 0, []
    self.lock = threading.Lock()  # grain reads ahead on threads

  def __len__(self):
    return SIZE

  def __getitem__(self, i):
    with self.lock:
      self.single_reads += 1
    return {"x": self.x[i], "y": self.y[i]}

  def __getitems__(self, indices):
    with self.lock:
      self.batch_reads.append(list(indices))
    return [{"x": self.x[i], "y": self.y[i]} for i in indices]


def _stack(records):
  return {k: np.stack([r[k] for r in records]) for k in ("x", "y")}


def test_each_batch_is_one_getitems_call_with_the_in_memory_rows():
  source = CountingSource()
  streamed = grain_source.make_batch_fn(source, 8, seed=5, decode=_stack, read_ahead=2)
  in_memory = data.make_batch_fn({"x": source.x, "y": source.y}, 8, seed=5)
  for step in (0, 1, 2, 3, 9, 4):
    got, want = streamed(step), in_memory(step)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert source.single_reads == 0
  assert source.batch_reads and all(len(call) == 8 for call in source.batch_reads)
  # Calls hold the batch's rows as plain ints, in the batch's order.
  rows = [int(i) for i in data.batch_rows(SIZE, 8, 5, 9)]
  assert rows in source.batch_reads
  assert all(type(i) is int for call in source.batch_reads for i in call)


def test_read_records_without_getitems_reads_one_by_one():
  records = [{"x": np.float32(i)} for i in range(5)]
  assert [r["x"] for r in grain_source.read_records(records, np.array([4, 0, 2]))] == [4, 0, 2]
