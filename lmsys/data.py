"""Data layer: one loader contract for every source lmsys reads, and batching.

`load_arrays(name, data_dir=None, seed=0, **options)` returns a `Dataset` of
numpy arrays per split, for
  - scikit-learn's bundled sets: digits, breast_cancer, wine, iris
    (a fixed stratified 75/25 train/test split, seed 0);
  - `fashion_mnist`: the four IDX files (gzipped or not), 60k train / 10k
    test, x float32 in [0, 1] flattened to 784;
  - `fewclue/<task>` for the classification tasks eprstmt, tnews, iflytek,
    csldcp: character n-gram TF-IDF + truncated SVD features that lmsys
    computes itself (`lmsys.text`). `train` is the split file named by the
    `train_split` option (default train_few_all), `test` the one named by
    `test_split` (default dev_few_all: the public test sets are not shipped;
    a user who has `test_public.json` passes test_split="test_public");
  - `tfds/<name>`: a dataset already prepared by tensorflow_datasets in
    array_record format, read through `tfds.data_source(..., download=False)`.
Nothing here downloads: a missing file is a ConfigError naming it.
Every dataset's folder is found one way, `dataset_root`: the `data_dir`
argument (the config key `data.data_dir`), then `$LMSYS_DATA_DIR`, then the
loader's own default (Fashion-MNIST: Debian's /usr/share/datasets/fashion-mnist).

`make_batch_fn(arrays, batch_size, seed)` gives the trainer a pure function
of (seed, step): batch order never depends on the history of the process, so
a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
from typing import Callable

import numpy as np

from lmsys.config import ConfigError

SKLEARN_SETS = ("digits", "breast_cancer", "wine", "iris")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FEWCLUE_TASKS = ("eprstmt", "tnews", "iflytek", "csldcp")
# FewCLUE has no labelled public test set: its dev set is our held-out split.
FEWCLUE_SPLITS = {"train": "train_few_all", "test": "dev_few_all"}


@dataclasses.dataclass
class Dataset:
  """Arrays per split: splits[split] = {'x': float32 [N, D], 'y': int32 [N]}."""
  name: str
  splits: dict[str, dict[str, np.ndarray]]
  num_classes: int
  info: dict = dataclasses.field(default_factory=dict)

  def __getitem__(self, split):
    if split not in self.splits:
      raise ConfigError(f"dataset {self.name!r} has no split {split!r} (has: {', '.join(self.splits)})")
    return self.splits[split]


def known_datasets() -> list[str]:
  return [*SKLEARN_SETS, "fashion_mnist", *(f"fewclue/{t}" for t in FEWCLUE_TASKS), "tfds/<name>"]


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
      if _find_idx(root, _FASHION_STEMS["train"][0]):
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


def check_available(name: str, data_dir: str | None = None, **options) -> None:
  """Cheap check that `name` is known and its files exist (no loading, no features).

  Experiments call it in `validate`, before any compute. `options` are the
  loader's (FewCLUE: train_split, test_split).
  """
  if name in SKLEARN_SETS:
    return
  if name == "fashion_mnist":
    _fashion_mnist_root(data_dir)
    return
  if name.startswith("fewclue/") and name.split("/", 1)[1] in FEWCLUE_TASKS:
    task = name.split("/", 1)[1]
    directory = fewclue_dir(task, data_dir)
    splits = _fewclue_splits(options)
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


def _fewclue_splits(options) -> dict[str, str]:
  """{'train': file stem, 'test': file stem} from the train_split / test_split options."""
  return {"train": options.get("train_split") or FEWCLUE_SPLITS["train"],
          "test": options.get("test_split") or FEWCLUE_SPLITS["test"]}


def load_arrays(name: str, data_dir: str | None = None, seed: int = 0, **options) -> Dataset:
  """Loads dataset `name` as numpy arrays; raises ConfigError naming what is missing.

  `options` go to the loader that takes them: fewclue/* takes train_split and
  test_split (file stems, default train_few_all / dev_few_all) and the text
  feature settings of `lmsys.text.fewclue_features` (svd_dim, ngram_max,
  use_unlabeled); tfds/* takes x_key, y_key.
  """
  if name in SKLEARN_SETS:
    _no_options(name, options)
    return _load_sklearn(name, seed)
  if name == "fashion_mnist":
    _no_options(name, options)
    return load_fashion_mnist(data_dir)
  if name.startswith("fewclue/") and name.split("/", 1)[1] in FEWCLUE_TASKS:
    return _load_fewclue_features(name.split("/", 1)[1], data_dir, seed, **options)
  if name.startswith("tfds/") and len(name) > 5:
    return load_tfds(name[5:], data_dir, **options)
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


# ---------------------------------------------------------------- Fashion-MNIST

def read_idx(path: str) -> np.ndarray:
  """An IDX array (the MNIST file format); gzip is detected from the magic bytes."""
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ConfigError(f"not an IDX file: {path}")
  dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
  if raw[2] not in dtypes:
    raise ConfigError(f"IDX file {path}: unknown type code {raw[2]:#x}")
  ndim = raw[3]
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  data = np.frombuffer(raw, dtypes[raw[2]], offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise ConfigError(f"IDX file {path}: header says {shape}, found {data.size} values")
  return data.reshape(shape)


def _find_idx(directory: str, stem: str) -> str | None:
  for suffix in (".gz", ""):
    path = os.path.join(directory, stem + suffix)
    if os.path.isfile(path):
      return path
  return None


_FASHION_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _fashion_mnist_root(data_dir: str | None) -> str:
  """The directory holding all four IDX files (see dataset_root for the search order)."""
  root = dataset_root("fashion_mnist", data_dir)
  for stem in (s for pair in _FASHION_STEMS.values() for s in pair):
    if not _find_idx(root, stem):
      raise ConfigError(f"fashion_mnist: missing {stem}[.gz] in {root!r}")
  return root


def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
  """Fashion-MNIST from its four IDX files in `data_dir` (or a fashion-mnist/ under it)."""
  root = _fashion_mnist_root(data_dir)
  splits = {}
  for split, (images, labels) in _FASHION_STEMS.items():
    x, y = read_idx(_find_idx(root, images)), read_idx(_find_idx(root, labels))
    if len(x) != len(y):
      raise ConfigError(f"fashion_mnist: {len(x)} images but {len(y)} labels in {root!r} ({split})")
    splits[split] = {"x": x.reshape(len(x), -1).astype(np.float32) / 255.0, "y": y.astype(np.int32)}
  return Dataset("fashion_mnist", splits, num_classes=10, info={"dir": root})


# ---------------------------------------------------------------- FewCLUE

def fewclue_dir(task: str, data_dir: str | None = None) -> str:
  """`<root>/fewclue/<task>` (see dataset_root); data_dir may also be fewclue/ itself."""
  return dataset_root("fewclue", data_dir, task)


def kgclue_dir(data_dir: str | None = None) -> str:
  """`<root>/kgclue` (see dataset_root)."""
  return dataset_root("kgclue", data_dir)


def load_fewclue(task: str, split: str, data_dir: str | None = None) -> list[dict]:
  """The records of `<task>/<split>.json` (one JSON object a line) as dicts."""
  path = os.path.join(fewclue_dir(task, data_dir), f"{split}.json")
  if not os.path.isfile(path):
    raise ConfigError(f"fewclue/{task}: split file not found: {path!r} (config keys data.train_split, "
                      f"data.test_split name the split files)")
  return read_json_lines(path)


def read_json_lines(path: str, allow_empty: bool = False) -> list[dict]:
  """One JSON object a line; a bad line is one ConfigError naming the file and line."""
  records = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").strip()
        if line:
          record = json.loads(line)
          if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
          records.append(record)
      except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}, line {number}: malformed record ({str(e).splitlines()[0]})") from None
  if not records and not allow_empty:
    raise ConfigError(f"{path}: no records (empty file)")
  return records


def fewclue_text(task: str, record: dict) -> str:
  """The text a classifier reads: csldcp abstracts live in 'content', the rest in 'sentence'
  (tnews keywords are left out, as the note's sentence vectors saw only the sentence)."""
  return (record.get("content") if task == "csldcp" else record.get("sentence")) or ""


def fewclue_label_names(task: str, data_dir: str | None = None,
                        splits=tuple(FEWCLUE_SPLITS.values())) -> list[str]:
  """Class names in a fixed order; a record's class index is its position here.

  (iflytek has no label file: its names come from the labels of `splits`.)
  """
  directory = fewclue_dir(task, data_dir)
  if task == "eprstmt":
    return ["Negative", "Positive"]
  if task == "tnews":  # label codes 100..116 with gaps; the index file fixes the order.
    with open(os.path.join(directory, "label_index2en2zh.json"), encoding="utf-8") as f:
      return [str(json.loads(line)["label"]) for line in f if line.strip()]
  if task == "csldcp":
    with open(os.path.join(directory, "labels_all.txt"), encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()]
  if task == "iflytek":  # labels are already 0..118; the file has no list, so take them from the data.
    labels = {int(r["label"]) for s in splits for r in load_fewclue(task, s, data_dir)}
    return [str(i) for i in range(max(labels) + 1)]
  raise ConfigError(f"fewclue/{task}: not a classification task lmsys reads (known: {', '.join(FEWCLUE_TASKS)})")


def fewclue_labels(task: str, records: list[dict], names: list[str]) -> np.ndarray:
  index = {n: i for i, n in enumerate(names)}
  try:
    return np.array([index[str(r["label"])] for r in records], np.int32)
  except KeyError as e:
    raise ConfigError(f"fewclue/{task}: label {e.args[0]!r} not in the label list") from None


def _load_fewclue_features(task: str, data_dir: str | None, seed: int, train_split: str = "",
                           test_split: str = "", **options) -> Dataset:
  from lmsys import text  # pylint: disable=g-import-not-at-top
  files = _fewclue_splits({"train_split": train_split, "test_split": test_split})
  names = fewclue_label_names(task, data_dir, tuple(files.values()))
  records = {split: load_fewclue(task, file, data_dir) for split, file in files.items()}
  texts = {split: [fewclue_text(task, r) for r in recs] for split, recs in records.items()}
  unlabeled = []
  if os.path.isfile(os.path.join(fewclue_dir(task, data_dir), "unlabeled.json")):
    unlabeled = [fewclue_text(task, r) for r in load_fewclue(task, "unlabeled", data_dir)]
  features, info = text.fewclue_features(texts["train"], [texts["test"]], unlabeled, seed=seed, **options)
  splits = {"train": {"x": features[0], "y": fewclue_labels(task, records["train"], names)},
            "test": {"x": features[1], "y": fewclue_labels(task, records["test"], names)}}
  info.update(label_names=names, files=files)
  return Dataset(f"fewclue/{task}", splits, num_classes=len(names), info=info)


# ---------------------------------------------------------------- TFDS

def load_tfds(name: str, data_dir: str | None = None, x_key: str = "image", y_key: str = "label") -> Dataset:
  """A prepared TFDS dataset (array_record format) as arrays; never downloads.

  `data_dir` is the TFDS data root (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
  Images of uint8 are scaled to [0, 1]; x is flattened to [N, D].
  """
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
  splits = {}
  for split, source in sources.items():
    records = source.__getitems__(range(len(source))) if len(source) else []
    x = np.stack([np.asarray(r[x_key]) for r in records]) if records else np.zeros((0, 0))
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    splits[split] = {"x": x.reshape(len(x), -1).astype(np.float32) / scale,
                     "y": np.array([r[y_key] for r in records], np.int32)}
  return Dataset(f"tfds/{name}", splits, num_classes=int(num_classes))


# ---------------------------------------------------------------- arrays

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


def make_batch_fn(arrays: dict[str, np.ndarray], batch_size: int, seed: int
                  ) -> Callable[[int], dict[str, np.ndarray]]:
  """step -> batch: rows [step*B, (step+1)*B) of the endless sequence of epochs,
  each epoch a permutation seeded by (seed, epoch)."""
  size = len(next(iter(arrays.values())))
  if size == 0:
    raise ConfigError("cannot batch an empty dataset")

  def batch_fn(step: int) -> dict[str, np.ndarray]:
    start = step * batch_size
    positions = np.arange(start, start + batch_size)
    epochs, offsets = positions // size, positions % size
    idx = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      idx[sel] = epoch_permutation(seed, int(epoch), size)[offsets[sel]]
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
