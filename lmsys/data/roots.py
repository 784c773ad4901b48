"""Where each dataset's files live: the one data-root resolver of lmsys.

Every loader finds its folder through `dataset_root`: the `data_dir` argument
(the config key `data.data_dir`), then `$LMSYS_DATA_DIR`, then the loader's own
default (Fashion-MNIST: Debian's /usr/share/datasets/fashion-mnist). Nothing
downloads: a miss is one ConfigError saying where lmsys looked and where to get
the files.
"""

from __future__ import annotations

import os

from lmsys.config import ConfigError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_idx(directory: str, stem: str) -> str | None:
  """The path of IDX file `stem` in `directory`, gzipped (`.gz`) or not; None if absent."""
  for suffix in (".gz", ""):
    path = os.path.join(directory, stem + suffix)
    if os.path.isfile(path):
      return path
  return None


# ---------------------------------------------------------------- where data lives

# Where a user gets the files that are not shipped (one line in every "missing" error).
SOURCES = {
    "fewclue": "FewCLUE's public release (github.com/CLUEbenchmark/FewCLUE, datasets/)",
    "kgclue": "KgCLUE's public release (github.com/CLUEbenchmark/KgCLUE, datasets/)",
    "fashion_mnist": "Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
                     "or the four IDX files of github.com/zalandoresearch/fashion-mnist",
}


def _holds(family: str, base: str, task: str | None = None) -> str | None:
  """The dataset folder under `base` if `base` holds dataset `family` (None otherwise)."""
  if family == "fashion_mnist":
    for root in (base, os.path.join(base, "fashion-mnist"), os.path.join(base, "fashion_mnist")):
      if find_idx(root, FASHION_STEMS["train"][0]):
        return root
    return None
  if family == "fewclue":
    for path in (os.path.join(base, "fewclue", task), os.path.join(base, task)):
      if os.path.isdir(path):
        return path
    return None
  if family == "kgclue":
    for path in (os.path.join(base, "kgclue"), base):
      if os.path.isfile(os.path.join(path, "train.json")):
        return path
    return None
  raise ValueError(f"unknown data family {family!r}")


def dataset_root(family: str, data_dir: str | None = None, task: str | None = None) -> str:
  """The folder holding a dataset's files, found the one lmsys way.

  1. `data_dir` (the experiment's `data.data_dir` config key) when given: it
     must hold the dataset (a folder holding `fewclue/<task>/`, `kgclue/`, or
     the Fashion-MNIST IDX files, directly or in `fashion-mnist/`);
  2. else `$LMSYS_DATA_DIR`, if it holds the dataset;
  3. else the loader's own default (Fashion-MNIST: /usr/share/datasets/fashion-mnist).
  A miss is one ConfigError saying where lmsys looked and where to get the files.
  """
  what = f"{family}/{task}" if task else family
  if data_dir:
    found = _holds(family, data_dir, task)
    if not found:
      raise ConfigError(f"{what}: not found in data.data_dir={data_dir!r}; get it from {SOURCES[family]}")
    return found
  looked = []
  env = os.environ.get("LMSYS_DATA_DIR")
  if env:
    found = _holds(family, env, task)
    if found:
      return found
    looked.append(f"$LMSYS_DATA_DIR={env!r}")
  if family == "fashion_mnist":
    found = _holds(family, FASHION_MNIST_DIR)
    if found:
      return found
    looked.append(repr(FASHION_MNIST_DIR))
  where = f"looked in {' and '.join(looked)}" if looked else "$LMSYS_DATA_DIR is not set"
  raise ConfigError(f"{what}: data not found ({where}); get it from {SOURCES[family]} and set "
                    f"$LMSYS_DATA_DIR or config key data.data_dir (README: 'Real data')")


def fewclue_dir(task: str, data_dir: str | None = None) -> str:
  """`<root>/fewclue/<task>` (see dataset_root); data_dir may also be fewclue/ itself."""
  return dataset_root("fewclue", data_dir, task)


def kgclue_dir(data_dir: str | None = None) -> str:
  """`<root>/kgclue` (see dataset_root)."""
  return dataset_root("kgclue", data_dir)


VOCAB_FILE = os.path.join("vocab", "bert-base-chinese-vocab.txt")


def vocab_path(data_dir: str | None = None, path: str = "") -> str:
  """The BERT-chinese vocabulary file that notes 5 and 7 tokenise with.

  Args:
    data_dir: the config key `data.data_dir`: a data root holding `vocab/`, or one of its
      dataset folders (e.g. `<root>/kgclue`); None or "" means `$LMSYS_DATA_DIR`.
    path: the config key `data.vocab_path`; when given it is the file.

  Returns:
    `path`, or `<root>/vocab/bert-base-chinese-vocab.txt`.

  Raises:
    ConfigError naming `data.vocab_path` when the file is missing or no root is known.
  """
  if not path:
    root = data_dir or os.environ.get("LMSYS_DATA_DIR")
    if not root:
      raise ConfigError(f"config key 'data.vocab_path': empty and no data root ($LMSYS_DATA_DIR or "
                        f"data.data_dir) to find {VOCAB_FILE} in (README: 'Real data')")
    candidates = [os.path.join(root, VOCAB_FILE), os.path.join(os.path.dirname(root.rstrip(os.sep)), VOCAB_FILE)]
    path = next((p for p in candidates if os.path.isfile(p)), candidates[0])
  if not os.path.isfile(path):
    raise ConfigError(f"config key 'data.vocab_path': vocabulary file not found: {path!r} "
                      f"(vocab.txt of a Chinese BERT release; README: 'Real data')")
  return path
