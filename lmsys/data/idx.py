"""IDX files (the MNIST file format) and Fashion-MNIST from its four IDX files.

A malformed file (empty, wrong magic number, truncated, trailing bytes, a cut
gzip stream) is one ConfigError naming the file.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from lmsys.config import ConfigError
from lmsys.data import dataset, roots

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_header(path: str) -> tuple[np.dtype, tuple[int, ...]]:
  """(dtype, shape) from an IDX file's header, checked; reads only the header (cheap, for validate)."""
  with _open_idx(path) as f:
    return _idx_header(f, path)


def read_idx(path: str) -> np.ndarray:
  """An IDX array (the MNIST file format); gzip is detected from the magic bytes.

  A malformed file (empty, wrong magic number, truncated, trailing bytes, a
  cut gzip stream) is one ConfigError naming the file.
  """
  with _open_idx(path) as f:
    dtype, shape = _idx_header(f, path)
    payload = _read(f, path)
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(payload) != expected:
    raise ConfigError(f"{path}: {'truncated' if len(payload) < expected else 'trailing bytes'}: the header "
                      f"says shape {shape} ({expected} bytes of data), the file has {len(payload)}")
  return np.frombuffer(payload, dtype).reshape(shape)


def _open_idx(path: str):
  f = open(path, "rb")
  if f.read(2) == b"\x1f\x8b":
    f.seek(0)
    return gzip.GzipFile(fileobj=f, mode="rb")
  f.seek(0)
  return f


def _read(f, path: str, size: int = -1) -> bytes:
  try:
    return f.read(size)
  except (OSError, EOFError, gzip.BadGzipFile) as e:  # a cut or damaged gzip stream
    raise ConfigError(f"{path}: damaged gzip data ({e})") from None


def _idx_header(f, path: str) -> tuple[np.dtype, tuple[int, ...]]:
  magic = _read(f, path, 4)
  if not magic:
    raise ConfigError(f"{path}: empty file (expected an IDX file)")
  if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_DTYPES:
    raise ConfigError(f"{path}: not an IDX file (magic number {magic.hex()}, expected 0000 then a type "
                      f"code in {sorted(hex(c) for c in _IDX_DTYPES)} and the number of dimensions)")
  dims = _read(f, path, 4 * magic[3])
  if len(dims) < 4 * magic[3]:
    raise ConfigError(f"{path}: truncated header ({magic[3]} dimensions announced)")
  return np.dtype(_IDX_DTYPES[magic[2]]), tuple(int(d) for d in np.frombuffer(dims, ">u4"))



def _fashion_mnist_root(data_dir: str | None) -> str:
  """The directory holding all four IDX files (see dataset_root for the search order)."""
  root = roots.dataset_root("fashion_mnist", data_dir)
  for stem in (s for pair in roots.FASHION_STEMS.values() for s in pair):
    if not roots.find_idx(root, stem):
      raise ConfigError(f"fashion_mnist: missing {stem}[.gz] in {root!r}")
  return root


def _check_fashion_pair(image_path: str, image_shape, label_path: str, label_shape) -> None:
  """Images [N, 28, 28] and labels [N]: the checks a header allows."""
  if len(image_shape) != 3 or tuple(image_shape[1:]) != (28, 28):
    raise ConfigError(f"{image_path}: expected images of shape [N, 28, 28], the header says {tuple(image_shape)}")
  if len(label_shape) != 1:
    raise ConfigError(f"{label_path}: expected labels of shape [N], the header says {tuple(label_shape)}")
  if image_shape[0] != label_shape[0]:
    raise ConfigError(f"fashion_mnist: {image_shape[0]} images in {image_path} but {label_shape[0]} labels "
                      f"in {label_path}")


def check_fashion_mnist_files(data_dir: str | None = None) -> None:
  """Headers of the four IDX files (and the size of uncompressed ones): cheap, for validate()."""
  root = _fashion_mnist_root(data_dir)
  for images, labels in roots.FASHION_STEMS.values():
    paths = roots.find_idx(root, images), roots.find_idx(root, labels)
    headers = [read_idx_header(path) for path in paths]
    for path, (dtype, shape) in zip(paths, headers):
      expected = 4 + 4 * len(shape) + int(np.prod(shape)) * dtype.itemsize
      if not path.endswith(".gz") and os.path.getsize(path) != expected:
        raise ConfigError(f"{path}: {'truncated' if os.path.getsize(path) < expected else 'trailing bytes'}: "
                          f"the header says shape {shape} ({expected} bytes), the file has {os.path.getsize(path)}")
    _check_fashion_pair(paths[0], headers[0][1], paths[1], headers[1][1])


def load_fashion_mnist(data_dir: str | None = None) -> dataset.Dataset:
  """Fashion-MNIST from its four IDX files in `data_dir` (or a fashion-mnist/ under it)."""
  root = _fashion_mnist_root(data_dir)
  splits = {}
  for split, (images, labels) in roots.FASHION_STEMS.items():
    image_path, label_path = roots.find_idx(root, images), roots.find_idx(root, labels)
    x, y = read_idx(image_path), read_idx(label_path)
    _check_fashion_pair(image_path, x.shape, label_path, y.shape)
    bad = np.flatnonzero((y < 0) | (y > 9))
    if bad.size:
      raise ConfigError(f"{label_path}, record {bad[0]}: label {y[bad[0]]} is not a class (0-9)")
    splits[split] = {"x": x.reshape(len(x), -1).astype(np.float32) / 255.0, "y": y.astype(np.int32)}
  return dataset.Dataset("fashion_mnist", splits, num_classes=10, info={"dir": root})
