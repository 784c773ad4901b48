"""Character-level Chinese text for the causal LM of configs/attention_approx_lm.py.

Documents: the `sentence` field of every FewCLUE `unlabeled.json` (eprstmt
reviews, tnews headlines; the files without that field are skipped) and the
`question` field of KgCLUE `train.json`, from the folder holding `fewclue/`
and `kgclue/` (config data.data_dir, else $LMSYS_DATA_DIR: lmsys.data.dataset_root). A fixed 5% of documents (seeded
permutation) is held out. The vocabulary is every character seen at least
`min_count` times in the training documents; the rest map to <unk>. Documents
are joined into one stream, each followed by <eos>, and the LM reads windows
of that stream.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os

import numpy as np

from lmsys import data
from lmsys.config import ConfigError

PAD, UNK, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", "<eos>")


@dataclasses.dataclass
class CharCorpus:
  vocab: list[str]                 # id -> character (specials first)
  train: np.ndarray                # int32 token stream
  heldout: np.ndarray
  info: dict

  @property
  def vocab_size(self):
    return len(self.vocab)


def _sources(data_dir: str | None) -> list[tuple[str, str]]:
  """(file, JSON field) of every document source; a ConfigError if the data is missing."""
  root = os.path.dirname(data.kgclue_dir(data_dir))
  sources = [(path, "sentence") for path in sorted(glob.glob(os.path.join(root, "fewclue", "*", "unlabeled.json")))]
  if not sources:
    raise ConfigError(f"char corpus: no fewclue/*/unlabeled.json under {root!r}; get them from "
                      f"{data.SOURCES['fewclue']}")
  return sources + [(os.path.join(root, "kgclue", "train.json"), "question")]


def check_available(data_dir: str | None = None) -> None:
  """Cheap check (no reading) that the corpus files exist: for validate()."""
  _sources(data_dir)


def input_files(data_dir: str | None = None) -> list[str]:
  """The files the corpus is read from (for a run's provenance)."""
  return [path for path, _ in _sources(data_dir)]


def read_documents(data_dir: str | None = None) -> list[str]:
  """FewCLUE unlabeled sentences and KgCLUE questions, in a fixed order.

  A malformed source file (bad JSON line, not UTF-8) is one ConfigError naming
  the file and line (lmsys.data.read_json_lines). An empty file is allowed (the
  real cluewsc/unlabeled.json is empty); no documents at all is an error.
  """
  docs = []
  for path, field in _sources(data_dir):
    for record in data.read_json_lines(path, allow_empty=True):
      text = str(record.get(field, "")).strip()
      if text:
        docs.append(text)
  if not docs:
    raise ConfigError(f"char corpus: no documents found in {[p for p, _ in _sources(data_dir)]}")
  return docs


def load_corpus(data_dir: str | None, heldout_fraction: float = 0.05, min_count: int = 3,
                seed: int = 0, max_documents: int | None = None) -> CharCorpus:
  docs = read_documents(data_dir)
  order = np.random.default_rng(seed).permutation(len(docs))
  if max_documents:
    order = order[:max_documents]
  num_heldout = max(1, int(round(heldout_fraction * len(order))))
  heldout_docs = [docs[i] for i in order[:num_heldout]]
  train_docs = [docs[i] for i in order[num_heldout:]]
  counts = collections.Counter(ch for doc in train_docs for ch in doc)
  chars = sorted(ch for ch, c in counts.items() if c >= min_count)
  vocab = list(SPECIALS) + chars
  index = {ch: i for i, ch in enumerate(vocab)}

  def encode(documents):
    ids = []
    for doc in documents:
      ids.extend(index.get(ch, UNK) for ch in doc)
      ids.append(EOS)
    return np.asarray(ids, np.int32)

  train, heldout = encode(train_docs), encode(heldout_docs)
  info = {"documents": len(order), "heldout_documents": num_heldout,
          "train_tokens": int(train.size), "heldout_tokens": int(heldout.size),
          "vocab_size": len(vocab), "heldout_unk_rate": float((heldout == UNK).mean())}
  return CharCorpus(vocab, train, heldout, info)


def window_batch(stream: np.ndarray, batch_size: int, length: int, seed: int, step: int,
                 process_index: int = 0, process_count: int = 1) -> np.ndarray:
  """[batch_size / process_count, length + 1] random windows: process `process_index`'s
  contiguous block of the global batch; a pure function of (seed, step) for resumable runs.

  Every process draws all batch_size window starts (integers, cheap) so the global
  batch is the same for any process count, and cuts only its own windows.
  """
  if batch_size % process_count:
    raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
  rng = np.random.default_rng([seed, step])
  starts = rng.integers(0, stream.size - length - 1, size=batch_size)
  rows = batch_size // process_count
  return np.stack([stream[s: s + length + 1] for s in starts[process_index * rows:(process_index + 1) * rows]])


def heldout_windows(stream: np.ndarray, length: int, max_windows: int | None = None) -> np.ndarray:
  """Consecutive non-overlapping [N, length + 1] windows covering the held-out stream."""
  count = (stream.size - 1) // length
  if count < 1:
    raise ConfigError(f"char corpus: {stream.size} held-out tokens, too few for one window of "
                      f"{length + 1} (context {length}); use more documents or a shorter context")
  if max_windows:
    count = min(count, max_windows)
  return np.stack([stream[i * length: i * length + length + 1] for i in range(count)])
