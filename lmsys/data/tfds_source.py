"""Prepared TFDS datasets (array_record format) read as arrays; never downloads."""

from __future__ import annotations

import glob
import os

import numpy as np

from lmsys.config import ConfigError
from lmsys.data import dataset


def load_tfds(name: str, data_dir: str | None = None, x_key: str = "image", y_key: str = "label") -> dataset.Dataset:
  """A prepared TFDS dataset (array_record format) as arrays; never downloads.

  `data_dir` is the TFDS data root (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
  Images of uint8 are scaled to [0, 1]; x is flattened to [N, D].
  """
  sources, num_classes = open_tfds(name, data_dir, y_key)
  splits = {split: _read_tfds_split(f"tfds/{name}", split, source, x_key, y_key, int(num_classes))
            for split, source in sources.items()}
  return dataset.Dataset(f"tfds/{name}", splits, num_classes=int(num_classes))


def _read_tfds_split(name: str, split: str, source, x_key: str, y_key: str, num_classes: int):
  """One split as arrays; an empty split, an unreadable record (a damaged ArrayRecord file), a
  missing key or a label outside [0, num_classes) is one ConfigError naming the split and record."""
  files = sorted(glob.glob(os.path.join(source.dataset_info.data_dir, f"*-{split}.array_record*")))
  where = f"{name}, split {split!r} ({', '.join(files) or source.dataset_info.data_dir})"
  if not len(source):
    raise ConfigError(f"{where}: no records (empty split)")
  try:
    records = source.__getitems__(range(len(source)))
  except Exception:  # pylint: disable=broad-except  (array_record raises many kinds); find the record
    for i in range(len(source)):
      try:
        source[i]
      except Exception as e:  # pylint: disable=broad-except
        raise ConfigError(f"{where}, record {i}: unreadable ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    raise
  for i, record in enumerate(records):
    missing = [k for k in (x_key, y_key) if k not in record]
    if missing:
      raise ConfigError(f"{where}, record {i}: no {' or '.join(map(repr, missing))} feature "
                        f"(has: {', '.join(record)}; the loader options x_key / y_key name them)")
    try:  # a damaged file can also decode to None values instead of raising
      label = int(record[y_key])
      np.asarray(record[x_key], np.float32)
    except (TypeError, ValueError) as e:
      raise ConfigError(f"{where}, record {i}: unreadable or malformed ({e})") from None
    if not 0 <= label < num_classes:
      raise ConfigError(f"{where}, record {i}: label {label} is not a class (0-{num_classes - 1})")
  return tfds_arrays(records, x_key, y_key)


def open_tfds(name: str, data_dir: str | None = None, y_key: str = "label"):
  """({split: random-access source over the ArrayRecord files}, number of classes); reads no records."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f"tfds/{name}: tensorflow_datasets is not installed (pip install tensorflow-datasets)") from None
  try:
    sources = tfds.data_source(name, data_dir=data_dir, download=False)
    num_classes = tfds.builder(name, data_dir=data_dir).info.features[y_key].num_classes
  except Exception as e:  # DatasetNotFoundError, AssertionError (not prepared), NotImplementedError (tfrecord)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"tfds/{name}: cannot read a prepared array_record dataset in {data_dir!r}: {first}") from None
  return sources, num_classes


def tfds_arrays(records, x_key: str = "image", y_key: str = "label") -> dict[str, np.ndarray]:
  """TFDS examples as {'x': float32 [N, D] (uint8 scaled to [0, 1]), 'y': int32 [N]}: the one
  decoding of both input paths (in memory here, streamed in lmsys.data.grain_source)."""
  x = np.stack([np.asarray(r[x_key]) for r in records]) if len(records) else np.zeros((0, 0))
  scale = 255.0 if x.dtype == np.uint8 else 1.0
  return {"x": x.reshape(len(x), -1).astype(np.float32) / scale,
          "y": np.array([r[y_key] for r in records], np.int32)}
