"""Bad data (issue 11, docs/reliability.md): every loader reports a malformed file as one
ConfigError naming the file and the line or record; the runner prints it as one line, exit 2.

Malformed FewCLUE/KgCLUE JSON lines are also in tests/data/test_sources.py and tests/data/test_kgclue.py.
"""

import gzip
import json
import os

import numpy as np
import pytest

from lmsys import data
from lmsys.config import ConfigError
from lmsys.data import char_corpus, kgclue
from tests import fixture_data
from tests.helpers import run_cli

# ---------------------------------------------------------------- Fashion-MNIST IDX files

def _idx_bytes(array):
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_fashion(directory, n_train=12, n_test=5):
  """The four IDX files (train images gzipped, the rest not); returns {stem: path}."""
  rng = np.random.default_rng(0)
  paths = {}
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    for kind, array in (("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                        ("labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))):
      stem = f"{prefix}-{kind}"
      gz = stem == "train-images-idx3-ubyte"
      path = os.path.join(directory, stem + (".gz" if gz else ""))
      with (gzip.open if gz else open)(path, "wb") as f:
        f.write(_idx_bytes(array))
      paths[stem] = path
  return paths


def _truncate(path, keep):
  with open(path, "rb") as f:
    raw = f.read()
  with open(path, "wb") as f:
    f.write(raw[:keep])


def _set_byte(path, offset, value):
  with open(path, "r+b") as f:
    f.seek(offset)
    f.write(bytes([value]))


# Each fault: (what to do to the files, the file it must name, a phrase of the message, whether
# validate() -- the cheap check run before anything is written -- already sees it).
IDX_FAULTS = {
    "truncated_data": (lambda p: _truncate(p["t10k-images-idx3-ubyte"], 16 + 28 * 28 * 3),
                       "t10k-images-idx3-ubyte", "truncated", True),
    "truncated_header": (lambda p: _truncate(p["t10k-labels-idx1-ubyte"], 6),
                         "t10k-labels-idx1-ubyte", "truncated header", True),
    "truncated_gzip": (lambda p: _truncate(p["train-images-idx3-ubyte"],
                                           os.path.getsize(p["train-images-idx3-ubyte"]) // 2),
                       "train-images-idx3-ubyte.gz", "damaged gzip data", False),
    "wrong_magic": (lambda p: _set_byte(p["train-labels-idx1-ubyte"], 0, 0x1F),
                    "train-labels-idx1-ubyte", "not an IDX file (magic number", True),
    "wrong_type_code": (lambda p: _set_byte(p["t10k-labels-idx1-ubyte"], 2, 0x42),
                        "t10k-labels-idx1-ubyte", "not an IDX file (magic number", True),
    "empty_file": (lambda p: open(p["t10k-labels-idx1-ubyte"], "wb").close(),
                   "t10k-labels-idx1-ubyte", "empty file", True),
    "count_mismatch": (lambda p: _write_over(p["t10k-labels-idx1-ubyte"], np.zeros(4, np.uint8)),
                       "t10k-labels-idx1-ubyte", "5 images in", True),
    "unknown_label": (lambda p: _set_byte(p["t10k-labels-idx1-ubyte"], 8 + 3, 12),
                      "t10k-labels-idx1-ubyte, record 3", "label 12 is not a class", False),
}


def _write_over(path, array):
  with open(path, "wb") as f:
    f.write(_idx_bytes(array))


@pytest.mark.parametrize("fault", list(IDX_FAULTS))
def test_malformed_idx_file_is_one_error_naming_the_file(tmp_path, fault):
  corrupt, names, phrase, seen_by_validate = IDX_FAULTS[fault]
  corrupt(_write_fashion(str(tmp_path)))
  with pytest.raises(ConfigError) as e:
    data.load_fashion_mnist(str(tmp_path))
  message = str(e.value)
  assert os.path.join(str(tmp_path), names) in message and phrase in message, message
  assert "\n" not in message
  if seen_by_validate:
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(")):
      data.check_available("fashion_mnist", str(tmp_path))
  else:
    data.check_available("fashion_mnist", str(tmp_path))  # only a full read finds these


@pytest.mark.slow
def test_runner_reports_a_bad_idx_file_in_one_line_before_writing_the_workdir(tmp_path):
  os.makedirs(tmp_path / "data")
  files = _write_fashion(str(tmp_path / "data"))
  _truncate(files["t10k-images-idx3-ubyte"], 100)
  workdir = tmp_path / "run"
  result = run_cli(["--config=configs/mlp.py:smoke,fashion_mnist", f"--config.data.data_dir={tmp_path / 'data'}",
                    f"--workdir={workdir}"])
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
  assert result.stderr.startswith("error: ") and "t10k-images-idx3-ubyte: truncated" in result.stderr
  assert not workdir.exists()


# ---------------------------------------------------------------- FewCLUE

@pytest.fixture
def fixture_root(tmp_path):
  root = tmp_path / "data"
  fixture_data.write_fixture_data(root)
  return root


def _replace_line(path, index, transform):
  lines = path.read_text(encoding="utf-8").splitlines()
  lines[index] = transform(lines[index])
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_fewclue_unknown_label_names_file_and_record(fixture_root):
  path = fixture_root / "fewclue" / "eprstmt" / "dev_few_all.json"
  _replace_line(path, 3, lambda line: json.dumps({**json.loads(line), "label": "Neutral"}, ensure_ascii=False))
  with pytest.raises(ConfigError, match=r"dev_few_all\.json, record 4: label 'Neutral' not in the label list"):
    data.load_arrays("fewclue/eprstmt", str(fixture_root))


def test_fewclue_empty_split_file_is_an_error(fixture_root):
  (fixture_root / "fewclue" / "eprstmt" / "train_few_all.json").write_bytes(b"")
  with pytest.raises(ConfigError, match=r"train_few_all\.json: no records \(empty file\)"):
    data.load_arrays("fewclue/eprstmt", str(fixture_root))


def test_fewclue_label_files_name_file_and_line(fixture_root):
  labels = fixture_root / "fewclue" / "csldcp" / "labels_all.txt"
  labels.write_bytes(labels.read_bytes() + b"\xff\xfe\n")
  n = len([l for l in labels.read_bytes().splitlines() if l.strip()])
  with pytest.raises(ConfigError, match=rf"labels_all\.txt, line {n}: not UTF-8"):
    data.fewclue_label_names("csldcp", str(fixture_root))
  labels.write_bytes(b"")
  with pytest.raises(ConfigError, match=r"labels_all\.txt: no lines \(empty file\)"):
    data.fewclue_label_names("csldcp", str(fixture_root))
  index = fixture_root / "fewclue" / "tnews" / "label_index2en2zh.json"
  _replace_line(index, 1, lambda line: line[:-3])
  with pytest.raises(ConfigError, match=r"label_index2en2zh\.json, line 2: malformed record"):
    data.fewclue_label_names("tnews", str(fixture_root))
  _replace_line(index, 1, lambda line: '{"label_desc": "news_x"}')
  with pytest.raises(ConfigError, match=r"label_index2en2zh\.json, record 2: no 'label' field"):
    data.fewclue_label_names("tnews", str(fixture_root))


# ---------------------------------------------------------------- KgCLUE

def test_kgclue_bad_files_name_file_and_line(fixture_root):
  path = fixture_root / "kgclue" / "dev.json"
  good = path.read_bytes()
  path.write_bytes(b"")
  with pytest.raises(ConfigError, match=r"dev\.json: no records \(empty file\)"):
    kgclue.load_split("dev", str(fixture_root))
  path.write_bytes(good + b'{"question": "\xff\xfe"}\n')
  n = len(good.splitlines()) + 1
  with pytest.raises(ConfigError, match=rf"dev\.json, line {n}: malformed record"):
    kgclue.load_split("dev", str(fixture_root))
  path.write_bytes(good + b'{"question": "q", "answer": "no separators"}\n')
  with pytest.raises(ConfigError, match=rf"dev\.json, line {n}: malformed KgCLUE record"):
    kgclue.load_split("dev", str(fixture_root))


# ---------------------------------------------------------------- text corpora (lmsys.data.char_corpus)

def test_char_corpus_names_a_non_utf8_line_and_a_too_short_heldout_stream(fixture_root):
  path = fixture_root / "fewclue" / "tnews" / "unlabeled.json"
  lines = path.read_bytes().splitlines()
  lines[1] = b'{"sentence": "\xe4\xb8"}'  # a UTF-8 character cut in half
  path.write_bytes(b"\n".join(lines) + b"\n")
  with pytest.raises(ConfigError, match=r"tnews/unlabeled\.json, line 2: malformed record"):
    char_corpus.read_documents(str(fixture_root))
  with pytest.raises(ConfigError, match="5 held-out tokens, too few for one window of 9"):
    char_corpus.heldout_windows(np.arange(5, dtype=np.int32), 8)


def test_char_corpus_with_no_documents_is_an_error(fixture_root):
  for path in (fixture_root / "fewclue").glob("*/unlabeled.json"):
    path.write_bytes(b"")
  (fixture_root / "kgclue" / "train.json").write_bytes(b"")
  with pytest.raises(ConfigError, match="char corpus: no documents found"):
    char_corpus.read_documents(str(fixture_root))


# ---------------------------------------------------------------- TFDS (ArrayRecord)

@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
  return fixture_data.write_tiny_tfds(tmp_path_factory.mktemp("tfds"))


def test_tfds_damaged_array_record_file_names_split_file_and_record(tfds_root, tmp_path):
  import shutil
  root = tmp_path / "tfds"
  shutil.copytree(tfds_root, root)
  assert data.load_arrays("tfds/tiny_lmsys", data_dir=str(root))["train"]["x"].shape == (10, 6)
  with pytest.raises(ConfigError, match=r"split 'train' .*, record 0: no 'pixels' feature"):
    data.load_arrays("tfds/tiny_lmsys", data_dir=str(root), x_key="pixels")
  (path,) = root.glob("tiny_lmsys/1.0.0/*-test.array_record*")
  _truncate(str(path), os.path.getsize(path) // 2)
  with pytest.raises(ConfigError) as e:
    data.load_arrays("tfds/tiny_lmsys", data_dir=str(root))
  assert f"split 'test' ({path}), record " in str(e.value) and "unreadable" in str(e.value), e.value
