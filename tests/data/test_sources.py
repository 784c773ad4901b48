"""The data layer: every loader on real or small self-written files, and batching."""

import gzip
import os

import numpy as np
import pytest

from lmsys import data
from lmsys.config import ConfigError
from tests import fixture_data
from tests.conftest import REAL_DATA_DIR, needs_real_data


def _write_idx(path, array, compress):
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(payload)


def _write_fashion(directory, n_train=12, n_test=5, compress_images=True):
  rng = np.random.default_rng(0)
  arrays = {}
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte" + (".gz" if compress_images else "")),
               images, compress_images)
    _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"), labels, False)
    arrays[prefix] = (images, labels)
  return arrays


@pytest.mark.parametrize("compress_images", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, compress_images):
  written = _write_fashion(str(tmp_path), compress_images=compress_images)
  ds = data.load_arrays("fashion_mnist", data_dir=str(tmp_path))
  assert ds.num_classes == 10
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images, labels = written[prefix]
    x, y = ds[split]["x"], ds[split]["y"]
    assert x.shape == (len(images), 784) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x, images.reshape(len(images), -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_fashion_mnist_subdirectory_and_missing_files(tmp_path):
  sub = tmp_path / "fashion-mnist"
  sub.mkdir()
  _write_fashion(str(sub))
  assert data.load_arrays("fashion_mnist", data_dir=str(tmp_path))["train"]["x"].shape == (12, 784)
  os.remove(sub / "t10k-labels-idx1-ubyte")
  with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
    data.load_arrays("fashion_mnist", data_dir=str(tmp_path))
  with pytest.raises(ConfigError, match="nowhere"):
    data.load_arrays("fashion_mnist", data_dir=str(tmp_path / "nowhere"))


def test_idx_header_mismatch_is_a_config_error(tmp_path):
  path = tmp_path / "bad-idx"
  path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(3))
  with pytest.raises(ConfigError, match="header says"):
    data.read_idx(str(path))


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIR),
                    reason=f"Debian dataset-fashion-mnist not installed at {data.FASHION_MNIST_DIR}")
def test_fashion_mnist_real_files():
  ds = data.load_arrays("fashion_mnist")
  assert ds["train"]["x"].shape == (60000, 784) and ds["test"]["x"].shape == (10000, 784)
  assert np.bincount(ds["train"]["y"]).tolist() == [6000] * 10


def test_unknown_dataset_and_options_name_the_problem():
  with pytest.raises(ConfigError, match="unknown dataset 'nope'") as e:
    data.load_arrays("nope")
  assert "\n" not in str(e.value)
  with pytest.raises(ConfigError, match="fewclue/ocnli"):
    data.load_arrays("fewclue/ocnli")
  with pytest.raises(ConfigError, match="takes no options"):
    data.load_arrays("iris", svd_dim=3)


def test_sklearn_sets_split_and_types():
  for name in data.SKLEARN_SETS:
    ds = data.load_arrays(name)
    n = len(ds["train"]["y"]) + len(ds["test"]["y"])
    assert abs(len(ds["test"]["y"]) / n - 0.25) < 0.01
    assert set(np.unique(ds["train"]["y"])) == set(range(ds.num_classes))


# ---------------------------------------------------------------- FewCLUE

# Each FewCLUE test runs on the fixture data (tests/fixture_data.py, always) and on the real
# files (skipped, with the reason, when they are absent): same code paths, sizes from each.
REAL_FEWCLUE = {"lines": {("tnews", "train_few_all"): 1185, ("eprstmt", "unlabeled"): 19565,
                          ("csldcp", "dev_few_all"): 2068, ("eprstmt", "train_few_all"): 160},
                "num_classes": {"eprstmt": 2, "tnews": 15, "iflytek": 119, "csldcp": 67}}
FIXTURE_FEWCLUE = {"lines": {("tnews", "train_few_all"): fixture_data.few_all_lines("tnews"),
                             ("eprstmt", "unlabeled"): fixture_data.UNLABELED_LINES["eprstmt"],
                             ("csldcp", "dev_few_all"): fixture_data.few_all_lines("csldcp"),
                             ("eprstmt", "train_few_all"): fixture_data.few_all_lines("eprstmt")},
                   "num_classes": fixture_data.NUM_CLASSES}


@pytest.fixture(params=["fixture", pytest.param("real", marks=needs_real_data)])
def fewclue_root(request, monkeypatch):
  """(data root, expected sizes), with $LMSYS_DATA_DIR pointing at that root."""
  if request.param == "real":
    root, expected = REAL_DATA_DIR, REAL_FEWCLUE
  else:
    root, expected = str(request.getfixturevalue("fixture_data_dir")), FIXTURE_FEWCLUE
  monkeypatch.setenv("LMSYS_DATA_DIR", root)
  return root, expected


def test_load_fewclue_records_and_errors(tmp_path, fewclue_root):
  root, expected = fewclue_root
  lines = expected["lines"]
  records = data.load_fewclue("tnews", "train_few_all")
  assert len(records) == lines["tnews", "train_few_all"] and {"sentence", "label"} <= set(records[0])
  assert len(data.load_fewclue("eprstmt", "unlabeled")) == lines["eprstmt", "unlabeled"]
  folds = [data.load_fewclue("eprstmt", f"train_{k}") for k in range(5)]
  assert sum(len(f) for f in folds) == lines["eprstmt", "train_few_all"]  # few_all = the 5 folds
  with pytest.raises(ConfigError, match="test_public.json"):
    data.load_fewclue("tnews", "test_public")
  with pytest.raises(ConfigError, match="fewclue/tnews") as e:
    data.load_fewclue("tnews", "train_few_all", data_dir=str(tmp_path))
  assert str(tmp_path) in str(e.value)
  # The fewclue/ folder itself is accepted as data_dir too.
  fewclue_dir = os.path.join(root, "fewclue")
  assert len(data.load_fewclue("csldcp", "dev_few_all", data_dir=fewclue_dir)) == lines["csldcp", "dev_few_all"]


@pytest.mark.parametrize("task", ["eprstmt", "tnews", "iflytek", "csldcp"])
def test_fewclue_labels_are_contiguous(task, fewclue_root):
  num_classes = fewclue_root[1]["num_classes"][task]
  names = data.fewclue_label_names(task)
  assert len(names) == num_classes
  for split in data.FEWCLUE_SPLITS.values():
    records = data.load_fewclue(task, split)
    y = data.fewclue_labels(task, records, names)
    assert y.min() >= 0 and y.max() < num_classes
    assert all(data.fewclue_text(task, r) for r in records)
    assert all(names[label] == str(r["label"]) for label, r in zip(y, records))


def test_fewclue_text_features(fewclue_root):
  n = fewclue_root[1]["lines"]["eprstmt", "train_few_all"]
  ds = data.load_arrays("fewclue/eprstmt", svd_dim=32, use_unlabeled=False)
  assert ds["train"]["x"].shape == (n, 32) and ds["test"]["x"].shape[1] == 32
  assert ds["train"]["x"].dtype == np.float32 and np.isfinite(ds["test"]["x"]).all()
  assert ds.num_classes == 2 and np.bincount(ds["train"]["y"]).min() > n // 4
  assert ds.info["fit_documents"] == n  # fitted on train only: never on held-out text
  with pytest.raises(ConfigError, match="ngram_max"):
    data.load_arrays("fewclue/eprstmt", ngram_max=5)


def test_fewclue_features_separate_the_fixture_classes(fixture_data_env):
  """On the fixture data each class has characters of its own, so the features carry the label:
  a nearest-class-mean rule on held-out lines beats chance by far for every task."""
  for task in data.FEWCLUE_TASKS:
    ds = data.load_arrays(f"fewclue/{task}", svd_dim=16)
    x, y = ds["train"]["x"], ds["train"]["y"]
    means = np.stack([x[y == c].mean(0) for c in range(ds.num_classes)])
    predicted = np.argmin(((ds["test"]["x"][:, None] - means[None]) ** 2).sum(-1), 1)
    chance = 1 / ds.num_classes
    assert np.mean(predicted == ds["test"]["y"]) > chance + 0.5 * (1 - chance), task


# ---------------------------------------------------------------- TFDS

def test_tfds_tiny_dataset_built_locally(tmp_path):
  fixture_data.write_tiny_tfds(tmp_path)
  ds = data.load_arrays("tfds/tiny_lmsys", data_dir=str(tmp_path))
  assert ds.num_classes == 4 and set(ds.splits) == {"train", "test"}
  x, y = ds["train"]["x"], ds["train"]["y"]
  assert x.shape == (10, 6) and x.dtype == np.float32 and y.dtype == np.int32
  # Records may be shuffled on disk; each row still pairs its image with its label.
  order = np.argsort(x[:, 0])
  np.testing.assert_allclose(x[order, 0] * 255, 20 * np.arange(10), atol=1e-3)
  np.testing.assert_array_equal(y[order], np.arange(10) % 4)
  with pytest.raises(ConfigError, match="tfds/missing_set"):
    data.load_arrays("tfds/missing_set", data_dir=str(tmp_path))


# ---------------------------------------------------------------- batching

def test_make_batch_fn_is_a_pure_function_of_seed_and_step():
  arrays = {"x": np.arange(50, dtype=np.float32)[:, None], "y": np.arange(50, dtype=np.int32)}
  fn_a, fn_b = data.make_batch_fn(arrays, 8, seed=3), data.make_batch_fn(arrays, 8, seed=3)
  forward = [fn_a(s)["y"] for s in range(20)]
  backward = [fn_b(s)["y"] for s in reversed(range(20))][::-1]
  for a, b in zip(forward, backward):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(data.make_batch_fn(arrays, 8, seed=4)(0)["y"], forward[0])
  np.testing.assert_array_equal(fn_a(5)["x"][:, 0], fn_a(5)["y"])  # rows stay paired


def test_make_batch_fn_covers_every_epoch_once():
  size, batch = 12, 4
  fn = data.make_batch_fn({"y": np.arange(size)}, batch, seed=0)
  epochs = [np.concatenate([fn(s)["y"] for s in range(e * 3, e * 3 + 3)]) for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch.tolist()) == list(range(size))
  assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
  # A batch size that does not divide the data: positions run on across epochs.
  fn = data.make_batch_fn({"y": np.arange(10)}, 4, seed=1)
  stream = np.concatenate([fn(s)["y"] for s in range(5)])  # 20 rows = exactly 2 epochs
  assert sorted(stream[:10].tolist()) == list(range(10)) == sorted(stream[10:].tolist())
  with pytest.raises(ConfigError):
    data.make_batch_fn({"y": np.arange(0)}, 4, seed=0)


def test_subsample_and_standardize():
  arrays = {"x": np.arange(20.0)[:, None], "y": np.arange(20)}
  sub = data.subsample(arrays, 5, seed=0)
  assert len(sub["y"]) == 5 and np.array_equal(sub["x"][:, 0], sub["y"])
  np.testing.assert_array_equal(sub["y"], data.subsample(arrays, 5, seed=0)["y"])
  assert data.subsample(arrays, 50, seed=0) is arrays
  train, test = data.standardize(np.array([[1.0], [3.0]]), np.array([[2.0]]))
  np.testing.assert_allclose(train[:, 0], [-1, 1], atol=1e-5)
  np.testing.assert_allclose(test, [[0.0]], atol=1e-6)


def test_check_available_is_cheap_and_names_what_is_missing(tmp_path):
  data.check_available("digits")
  _write_fashion(str(tmp_path))
  data.check_available("fashion_mnist", str(tmp_path))
  with pytest.raises(ConfigError, match="missing"):
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    data.check_available("fashion_mnist", str(tmp_path))
  (tmp_path / "fewclue" / "tnews").mkdir(parents=True)
  (tmp_path / "fewclue" / "tnews" / "train_few_all.json").write_text("")
  with pytest.raises(ConfigError, match="dev_few_all.json"):
    data.check_available("fewclue/tnews", str(tmp_path))
  with pytest.raises(ConfigError, match="tfds/absent"):
    data.check_available("tfds/absent", str(tmp_path))
  with pytest.raises(ConfigError, match="unknown dataset"):
    data.check_available("mnist_typo")


def test_a_malformed_fewclue_line_is_one_error_naming_file_and_line(tmp_path):
  """Bad data: the loader names the file and the line (not a raw JSONDecodeError traceback)."""
  from tests import fixture_data
  root = tmp_path / "data"
  fixture_data.write_fixture_data(root)
  path = root / "fewclue" / "eprstmt" / "dev_few_all.json"
  lines = path.read_text(encoding="utf-8").splitlines()
  lines[2] = lines[2][:-5]  # cut a record in half
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  with pytest.raises(ConfigError, match=r"dev_few_all\.json, line 3: malformed record"):
    data.load_fewclue("eprstmt", "dev_few_all", str(root))
  (root / "fewclue" / "eprstmt" / "train_few_all.json").write_bytes(b"\xff\xfe not utf-8\n")
  with pytest.raises(ConfigError, match=r"train_few_all\.json, line 1: malformed record"):
    data.load_fewclue("eprstmt", "train_few_all", str(root))
