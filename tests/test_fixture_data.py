"""The fixture data (tests/fixture_data.py) is deterministic and has the real files' formats."""

import filecmp
import json
import os

from tests import fixture_data
from tests.conftest import REAL_DATA_DIR, needs_real_data


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_fixture_data_is_deterministic(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  summary = fixture_data.write_fixture_data(a)
  fixture_data.write_fixture_data(b)
  files = _files(a)
  assert files == _files(b)
  _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
  assert not mismatch and not errors
  for task, splits in summary["fewclue"].items():
    for split, lines in splits.items():
      with open(a / "fewclue" / task / f"{split}.json", encoding="utf-8") as f:
        assert sum(1 for line in f if line.strip()) == lines


def _signature(record):
  """Field names and JSON types (None matches any type: real files leave some fields null)."""
  sig = {}
  for key, value in record.items():
    sig[key] = None if value is None else type(value).__name__
    if isinstance(value, dict):
      sig[key] = ("dict", tuple(sorted(_signature(value).items())))
  return sig


def _compatible(fixture_sig, real_sig):
  return set(fixture_sig) == set(real_sig) and all(
      a is None or b is None or a == b for a, b in ((fixture_sig[k], real_sig[k]) for k in real_sig))


@needs_real_data
def test_fixture_files_have_the_real_formats(fixture_data_dir):
  """Every fixture file exists in the real data with the same fields and value types, the label
  files have the same shape, the vocabulary the same special-token ids; and every real
  train/dev/unlabeled split file has a fixture counterpart."""
  fixture, real = str(fixture_data_dir), REAL_DATA_DIR
  for rel in _files(fixture):
    real_path = os.path.join(real, rel)
    assert os.path.isfile(real_path), f"{rel}: not in the real data"
    if rel.endswith("bert-base-chinese-config.json"):
      with open(real_path) as f, open(os.path.join(fixture, rel)) as g:
        assert set(json.load(g)) <= set(json.load(f))
      continue
    if rel.endswith(".txt"):
      with open(real_path, encoding="utf-8") as f, open(os.path.join(fixture, rel), encoding="utf-8") as g:
        real_lines, fixture_lines = f.read().splitlines(), g.read().splitlines()
      if "vocab" in rel:
        for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
          assert fixture_lines.index(token) == real_lines.index(token), token
      assert all(line.strip() for line in fixture_lines)
      continue
    with open(real_path, encoding="utf-8") as f:
      real_records = [json.loads(line) for line in f if line.strip()][:50]
    with open(os.path.join(fixture, rel), encoding="utf-8") as f:
      fixture_records = [json.loads(line) for line in f if line.strip()]
    assert bool(real_records) == bool(fixture_records), f"{rel}: empty in one only"
    real_sigs = [_signature(r) for r in real_records]
    for record in fixture_records:
      assert any(_compatible(_signature(record), sig) for sig in real_sigs), (rel, record)
  for rel in _files(os.path.join(real, "fewclue")):
    name = os.path.basename(rel)
    if name.startswith(("train_", "dev_", "unlabeled")):
      assert os.path.isfile(os.path.join(fixture, "fewclue", rel)), f"fewclue/{rel}: no fixture file"
  # The labels the fixture uses are real labels (tnews codes, csldcp names).
  with open(os.path.join(real, "fewclue", "tnews", "label_index2en2zh.json"), encoding="utf-8") as f:
    codes = [json.loads(line)["label"] for line in f if line.strip()]
  assert [code for code, _, _ in fixture_data.TNEWS_LABELS] == codes
  with open(os.path.join(real, "fewclue", "csldcp", "labels_all.txt"), encoding="utf-8") as f:
    assert set(fixture_data.CSLDCP_LABELS) <= {line.strip() for line in f}
