"""One loader contract for every array dataset lmsys reads: `load_arrays` and `check_available`.

`load_arrays(name, data_dir=None, seed=0, **options)` returns a `Dataset` of
numpy arrays per split, for
  - scikit-learn's bundled sets: digits, breast_cancer, wine, iris
    (a fixed stratified 75/25 train/test split, seed 0);
  - `fashion_mnist`: the four IDX files (gzipped or not), 60k train / 10k
    test, x float32 in [0, 1] flattened to 784;
  - `fewclue/<task>` for the classification tasks eprstmt, tnews, iflytek,
    csldcp: character n-gram TF-IDF + truncated SVD features that lmsys
    computes itself (`lmsys.data.fewclue`). `train` is the split file named by the
    `train_split` option (default train_few_all), `test` the one named by
    `test_split` (default dev_few_all: the public test sets are not shipped;
    a user who has `test_public.json` passes test_split="test_public");
  - `tfds/<name>`: a dataset already prepared by tensorflow_datasets in
    array_record format, read through `tfds.data_source(..., download=False)`.
Nothing here downloads: a missing file is a ConfigError naming it.
Every dataset's folder is found one way, `dataset_root`: the `data_dir`
argument (the config key `data.data_dir`), then `$LMSYS_DATA_DIR`, then the
loader's own default (Fashion-MNIST: Debian's /usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import os

import numpy as np

from lmsys.config import ConfigError
from lmsys.data import fewclue, idx, roots, tfds_source
from lmsys.data.dataset import Dataset

SKLEARN_SETS = ("digits", "breast_cancer", "wine", "iris")


def known_datasets() -> list[str]:
  return [*SKLEARN_SETS, "fashion_mnist", *(f"fewclue/{t}" for t in fewclue.FEWCLUE_TASKS), "tfds/<name>"]


def check_available(name: str, data_dir: str | None = None, **options) -> None:
  """Cheap check that `name` is known and its files exist (no loading, no features).

  Experiments call it in `validate`, before any compute. `options` are the
  loader's (FewCLUE: train_split, test_split).
  """
  if name in SKLEARN_SETS:
    return
  if name == "fashion_mnist":
    idx.check_fashion_mnist_files(data_dir)
    return
  if name.startswith("fewclue/") and name.split("/", 1)[1] in fewclue.FEWCLUE_TASKS:
    task = name.split("/", 1)[1]
    directory = roots.fewclue_dir(task, data_dir)
    splits = fewclue.fewclue_splits(options)
    needed = [f"{s}.json" for s in splits.values()]
    needed += {"tnews": ["label_index2en2zh.json"], "csldcp": ["labels_all.txt"]}.get(task, [])
    for file in needed:
      if not os.path.isfile(os.path.join(directory, file)):
        raise ConfigError(f"{name}: file not found: {os.path.join(directory, file)!r}")
    return
  if name.startswith("tfds/") and len(name) > 5:
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    if not os.path.isdir(os.path.join(root, name[5:])):
      raise ConfigError(f"{name}: no prepared dataset directory {os.path.join(root, name[5:])!r}")
    return
  raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(known_datasets())})")


SKLEARN_FILES = {"digits": "digits.csv.gz", "breast_cancer": "breast_cancer.csv", "wine": "wine_data.csv",
                 "iris": "iris.csv"}


def input_files(name: str, data_dir: str | None = None, **options) -> list[str]:
  """The files `load_arrays(name, ...)` reads, for a run's provenance (lmsys.provenance).

  scikit-learn's bundled sets: the CSV shipped in sklearn.datasets; Fashion-MNIST: the four
  IDX files; FewCLUE: the split files, the label list and unlabeled.json where the task has
  one. A prepared TFDS dataset is a directory of shards: none are listed.
  """
  if name in SKLEARN_SETS:
    import importlib.resources  # pylint: disable=g-import-not-at-top
    return [str(importlib.resources.files("sklearn.datasets.data") / SKLEARN_FILES[name])]
  if name == "fashion_mnist":
    root = roots.dataset_root("fashion_mnist", data_dir)
    return [p for pair in roots.FASHION_STEMS.values() for stem in pair if (p := roots.find_idx(root, stem))]
  if name.startswith("fewclue/") and name.split("/", 1)[1] in fewclue.FEWCLUE_TASKS:
    directory = roots.fewclue_dir(name.split("/", 1)[1], data_dir)
    names = [f"{s}.json" for s in fewclue.fewclue_splits(options).values()]
    names += ["label_index2en2zh.json", "labels_all.txt", "unlabeled.json"]
    return [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]
  return []


def load_arrays(name: str, data_dir: str | None = None, seed: int = 0, **options) -> Dataset:
  """Loads dataset `name` as numpy arrays; raises ConfigError naming what is missing.

  `options` go to the loader that takes them: fewclue/* takes train_split and
  test_split (file stems, default train_few_all / dev_few_all) and the text
  feature settings of `lmsys.data.fewclue.fewclue_features` (svd_dim, ngram_max,
  use_unlabeled); tfds/* takes x_key, y_key.
  """
  if name in SKLEARN_SETS:
    _no_options(name, options)
    return _load_sklearn(name, seed)
  if name == "fashion_mnist":
    _no_options(name, options)
    return idx.load_fashion_mnist(data_dir)
  if name.startswith("fewclue/") and name.split("/", 1)[1] in fewclue.FEWCLUE_TASKS:
    return fewclue.load_fewclue_features(name.split("/", 1)[1], data_dir, seed, **options)
  if name.startswith("tfds/") and len(name) > 5:
    return tfds_source.load_tfds(name[5:], data_dir, **options)
  raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(known_datasets())})")


def _no_options(name, options):
  if options:
    raise ConfigError(f"dataset {name!r} takes no options (got: {', '.join(options)})")


def _load_sklearn(name: str, seed: int) -> Dataset:
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  bunch = getattr(sklearn.datasets, f"load_{name}")()
  x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
  return Dataset(name, {"train": {"x": x_tr, "y": y_tr}, "test": {"x": x_te, "y": y_te}},
                 num_classes=int(y.max()) + 1)
