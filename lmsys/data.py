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
a resumed run sees exactly the batches an uninterrupted one would. Each process
builds only its own rows of the global batch (`batch_rows`); data that does not
fit in memory takes the same rows from ArrayRecord files through grain
(`lmsys.input_pipeline`).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
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
    check_fashion_mnist_files(data_dir)
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
  for images, labels in _FASHION_STEMS.values():
    paths = _find_idx(root, images), _find_idx(root, labels)
    headers = [read_idx_header(path) for path in paths]
    for path, (dtype, shape) in zip(paths, headers):
      expected = 4 + 4 * len(shape) + int(np.prod(shape)) * dtype.itemsize
      if not path.endswith(".gz") and os.path.getsize(path) != expected:
        raise ConfigError(f"{path}: {'truncated' if os.path.getsize(path) < expected else 'trailing bytes'}: "
                          f"the header says shape {shape} ({expected} bytes), the file has {os.path.getsize(path)}")
    _check_fashion_pair(paths[0], headers[0][1], paths[1], headers[1][1])


def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
  """Fashion-MNIST from its four IDX files in `data_dir` (or a fashion-mnist/ under it)."""
  root = _fashion_mnist_root(data_dir)
  splits = {}
  for split, (images, labels) in _FASHION_STEMS.items():
    image_path, label_path = _find_idx(root, images), _find_idx(root, labels)
    x, y = read_idx(image_path), read_idx(label_path)
    _check_fashion_pair(image_path, x.shape, label_path, y.shape)
    bad = np.flatnonzero((y < 0) | (y > 9))
    if bad.size:
      raise ConfigError(f"{label_path}, record {bad[0]}: label {y[bad[0]]} is not a class (0-9)")
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
    path = os.path.join(directory, "label_index2en2zh.json")
    rows = read_json_lines(path)
    missing = next((i for i, row in enumerate(rows, 1) if "label" not in row), None)
    if missing:
      raise ConfigError(f"{path}, record {missing}: no 'label' field")
    return [str(row["label"]) for row in rows]
  if task == "csldcp":
    return read_text_lines(os.path.join(directory, "labels_all.txt"))
  if task == "iflytek":  # labels are already 0..118; the file has no list, so take them from the data.
    labels = {int(r["label"]) for s in splits for r in load_fewclue(task, s, data_dir)}
    return [str(i) for i in range(max(labels) + 1)]
  raise ConfigError(f"fewclue/{task}: not a classification task lmsys reads (known: {', '.join(FEWCLUE_TASKS)})")


def fewclue_labels(task: str, records: list[dict], names: list[str], source: str = "") -> np.ndarray:
  """Class indices of `records` (read from file `source`, named in errors)."""
  index = {n: i for i, n in enumerate(names)}
  for number, record in enumerate(records, 1):
    if str(record.get("label")) not in index:
      where = f"{source}, record {number}" if source else f"fewclue/{task}, record {number}"
      raise ConfigError(f"{where}: label {record.get('label')!r} not in the label list of fewclue/{task}")
  return np.array([index[str(r["label"])] for r in records], np.int32)


def read_vocab(path: str) -> list[str]:
  """The tokens of a vocabulary file (vocab.txt: one token a line, id = line index).

  Args:
    path: the file.

  Returns:
    Every line without its line break (blank lines kept: they hold ids).

  Raises:
    ConfigError: one line naming the file: not found, empty, or a line that is not UTF-8
      (with its number).
  """
  if not os.path.isfile(path):
    raise ConfigError(f"vocabulary file not found: {path!r}")
  tokens = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        tokens.append(raw.decode("utf-8").rstrip("\r\n"))
      except UnicodeDecodeError as e:
        raise ConfigError(f"vocabulary {path}, line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
  if not tokens:
    raise ConfigError(f"vocabulary {path}: no tokens (empty file)")
  return tokens


def read_text_lines(path: str) -> list[str]:
  """The non-blank lines of a UTF-8 text file, stripped; a bad file is one ConfigError naming file and line."""
  lines = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").strip()
      except UnicodeDecodeError as e:
        raise ConfigError(f"{path}, line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
      if line:
        lines.append(line)
  if not lines:
    raise ConfigError(f"{path}: no lines (empty file)")
  return lines


def _load_fewclue_features(task: str, data_dir: str | None, seed: int, train_split: str = "",
                           test_split: str = "", **options) -> Dataset:
  from lmsys import text  # pylint: disable=g-import-not-at-top
  files = _fewclue_splits({"train_split": train_split, "test_split": test_split})
  names = fewclue_label_names(task, data_dir, tuple(files.values()))
  records = {split: load_fewclue(task, file, data_dir) for split, file in files.items()}
  labels = {split: fewclue_labels(task, records[split], names,  # before the costly features
                                  os.path.join(fewclue_dir(task, data_dir), f"{file}.json"))
            for split, file in files.items()}
  texts = {split: [fewclue_text(task, r) for r in recs] for split, recs in records.items()}
  unlabeled = []
  if os.path.isfile(os.path.join(fewclue_dir(task, data_dir), "unlabeled.json")):
    unlabeled = [fewclue_text(task, r) for r in load_fewclue(task, "unlabeled", data_dir)]
  features, info = text.fewclue_features(texts["train"], [texts["test"]], unlabeled, seed=seed, **options)
  splits = {"train": {"x": features[0], "y": labels["train"]}, "test": {"x": features[1], "y": labels["test"]}}
  info.update(label_names=names, files=files)
  return Dataset(f"fewclue/{task}", splits, num_classes=len(names), info=info)


# ---------------------------------------------------------------- TFDS

def load_tfds(name: str, data_dir: str | None = None, x_key: str = "image", y_key: str = "label") -> Dataset:
  """A prepared TFDS dataset (array_record format) as arrays; never downloads.

  `data_dir` is the TFDS data root (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
  Images of uint8 are scaled to [0, 1]; x is flattened to [N, D].
  """
  sources, num_classes = open_tfds(name, data_dir, y_key)
  splits = {split: _read_tfds_split(f"tfds/{name}", split, source, x_key, y_key, int(num_classes))
            for split, source in sources.items()}
  return Dataset(f"tfds/{name}", splits, num_classes=int(num_classes))


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
  decoding of both input paths (in memory here, streamed in lmsys.input_pipeline)."""
  x = np.stack([np.asarray(r[x_key]) for r in records]) if len(records) else np.zeros((0, 0))
  scale = 255.0 if x.dtype == np.uint8 else 1.0
  return {"x": x.reshape(len(x), -1).astype(np.float32) / scale,
          "y": np.array([r[y_key] for r in records], np.int32)}


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
