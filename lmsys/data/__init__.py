"""Every reader and source of lmsys, and batching.

- `roots`: where each dataset lives (`dataset_root`, the one data-root resolver).
- `sources`: `load_arrays` / `check_available`, the loader contract for array datasets
  (scikit-learn's bundled sets, Fashion-MNIST, FewCLUE text features, TFDS).
- `idx`, `fewclue`, `kgclue`, `tfds_source`, `lines`: the readers of each format.
- `batching`: batches as pure functions of (seed, step); `grain_source`: the same rows
  streamed from ArrayRecord files through grain.
- `char_corpus` (the char LM's corpus), `wordpiece` (BERT's tokenizer).

The names most code needs are re-exported here (`from lmsys import data; data.load_arrays(...)`).
"""

from lmsys.data.batching import batch_rows, epoch_permutation, make_batch_fn, map_batches, standardize, subsample
from lmsys.data.dataset import Dataset
from lmsys.data.fewclue import (
                                FEWCLUE_SPLITS,
                                FEWCLUE_TASKS,
                                fewclue_features,
                                fewclue_label_names,
                                fewclue_labels,
                                fewclue_text,
                                load_fewclue,
)
from lmsys.data.idx import check_fashion_mnist_files, load_fashion_mnist, read_idx, read_idx_header
from lmsys.data.lines import read_json_lines, read_text_lines, read_vocab
from lmsys.data.roots import FASHION_MNIST_DIR, SOURCES, dataset_root, fewclue_dir, kgclue_dir, vocab_path
from lmsys.data.sources import SKLEARN_SETS, check_available, known_datasets, load_arrays
from lmsys.data.tfds_source import load_tfds, open_tfds, tfds_arrays

__all__ = [
    "FASHION_MNIST_DIR", "FEWCLUE_SPLITS", "FEWCLUE_TASKS", "SKLEARN_SETS", "SOURCES", "Dataset",
    "batch_rows", "check_available", "check_fashion_mnist_files", "dataset_root", "epoch_permutation",
    "fewclue_dir", "fewclue_features", "fewclue_label_names", "fewclue_labels", "fewclue_text",
    "kgclue_dir", "known_datasets", "load_arrays", "load_fashion_mnist", "load_fewclue", "load_tfds",
    "make_batch_fn", "map_batches", "open_tfds", "read_idx", "read_idx_header", "read_json_lines",
    "read_text_lines", "read_vocab", "standardize", "subsample", "tfds_arrays", "vocab_path",
]
