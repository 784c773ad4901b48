"""lmsys.data.char_corpus: the char corpus on data in the real layout, and the batches resume relies on."""

import collections
import json

import numpy as np
import pytest

from lmsys.config import ConfigError
from lmsys.data import char_corpus
from tests import fixture_data


def test_window_batch_is_a_pure_function_of_seed_and_step():
  """A resumed run draws the batch of step s without having drawn steps 0..s-1: the batch
  must depend on (seed, step) only, never on call order, earlier calls or numpy's global RNG."""
  stream = np.arange(5000, dtype=np.int32)
  batch, length = 6, 16
  forward = [char_corpus.window_batch(stream, batch, length, 7, s) for s in range(30)]
  np.random.seed(123)  # global RNG state must not matter
  backward = {s: char_corpus.window_batch(stream, batch, length, 7, s) for s in reversed(range(30))}
  interleaved = {}
  for s in (17, 3, 29, 0, 17):
    char_corpus.window_batch(stream, batch, length, 8, s)  # another seed in between
    interleaved[s] = char_corpus.window_batch(stream, batch, length, 7, s)
  for s, a in enumerate(forward):
    np.testing.assert_array_equal(a, backward[s])
    if s in interleaved:
      np.testing.assert_array_equal(a, interleaved[s])
  # Windows: length + 1 consecutive tokens of the stream, inside it.
  for a in forward:
    assert a.shape == (batch, length + 1) and a.dtype == stream.dtype
    assert np.all(np.diff(a, axis=1) == 1) and a.min() >= 0 and a.max() < stream.size
  # Different steps and different seeds draw different windows.
  starts = [tuple(a[:, 0]) for a in forward]
  assert len(set(starts)) == len(starts)
  assert not np.array_equal(char_corpus.window_batch(stream, batch, length, 8, 0), forward[0])


def test_window_batch_covers_the_stream():
  stream = np.arange(200, dtype=np.int32)
  windows = np.concatenate([char_corpus.window_batch(stream, 8, 10, 0, s) for s in range(600)])
  assert set(range(stream.size - 11)) <= set(windows[:, 0].tolist())  # every start is drawn
  assert windows.max() < stream.size


def test_corpus_reads_the_real_layout(fixture_data_dir):
  """FewCLUE unlabeled `sentence`s (files without one, and cluewsc's empty file, are skipped)
  and KgCLUE questions; a seeded 5% held out; rare characters become <unk>."""
  root = str(fixture_data_dir)
  docs = char_corpus.read_documents(root)
  expected = []
  for task in sorted(fixture_data.UNLABELED_LINES):
    with open(fixture_data_dir / "fewclue" / task / "unlabeled.json", encoding="utf-8") as f:
      expected += [json.loads(line)["sentence"] for line in f if line.strip() and "sentence" in json.loads(line)]
  with open(fixture_data_dir / "kgclue" / "train.json", encoding="utf-8") as f:
    expected += [json.loads(line)["question"] for line in f]
  assert docs == expected
  assert len(docs) == fixture_data.lm_documents()

  corpus = char_corpus.load_corpus(root, min_count=3, seed=0)
  info = corpus.info
  assert info["documents"] == len(docs) and info["heldout_documents"] == round(0.05 * len(docs))
  assert corpus.vocab[:3] == list(char_corpus.SPECIALS)
  assert (corpus.train == char_corpus.EOS).sum() == len(docs) - info["heldout_documents"]
  assert (corpus.heldout == char_corpus.EOS).sum() == info["heldout_documents"]
  # The vocabulary: characters seen >= min_count times in the training documents only.
  train_text = "".join(corpus.vocab[i] for i in corpus.train if i >= len(char_corpus.SPECIALS))
  counts = collections.Counter(train_text)
  assert all(counts[ch] >= 3 for ch in corpus.vocab[3:])
  assert not set(fixture_data.RARE) & set(corpus.vocab)  # too rare: <unk>
  assert (corpus.train == char_corpus.UNK).sum() > 0
  # Same seed, same split; another seed, another split. max_documents caps the documents.
  again = char_corpus.load_corpus(root, min_count=3, seed=0)
  np.testing.assert_array_equal(again.heldout, corpus.heldout)
  assert not np.array_equal(char_corpus.load_corpus(root, min_count=3, seed=1).heldout, corpus.heldout)
  assert char_corpus.load_corpus(root, seed=0, max_documents=100).info["documents"] == 100


def test_corpus_names_missing_files(tmp_path):
  with pytest.raises(ConfigError):
    char_corpus.load_corpus(str(tmp_path / "nowhere"))
  fixture_data.write_fixture_data(tmp_path)
  (tmp_path / "kgclue" / "train.json").unlink()
  with pytest.raises(ConfigError, match="kgclue"):
    char_corpus.load_corpus(str(tmp_path))
