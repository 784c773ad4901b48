"""FewCLUE: its tasks, split files and labels, and the text features lmsys computes itself.

Records are one JSON object a line (`<root>/fewclue/<task>/<split>.json`). The
classification tasks (eprstmt, tnews, iflytek, csldcp) become arrays through
character n-gram TF-IDF fitted on the training text (plus unlabeled text of the
same task where there is some), reduced by truncated SVD (LSA) to a few hundred
dense dimensions: a stand-in for the 768-d sentence vectors of note 1 (no
pretrained encoder can be had here). Chinese has no spaces, so characters and
character pairs are the natural units.
"""

from __future__ import annotations

import os

import numpy as np

from lmsys.config import ConfigError
from lmsys.data import dataset, lines, roots

# ChID marks the idiom blank of a passage with this token.
CHID_BLANK = "#idiom#"
FEWCLUE_TASKS = ("eprstmt", "tnews", "iflytek", "csldcp")
# FewCLUE has no labelled public test set: its dev set is our held-out split.
FEWCLUE_SPLITS = {"train": "train_few_all", "test": "dev_few_all"}


def fewclue_splits(options) -> dict[str, str]:
  """{'train': file stem, 'test': file stem} from the train_split / test_split options."""
  return {"train": options.get("train_split") or FEWCLUE_SPLITS["train"],
          "test": options.get("test_split") or FEWCLUE_SPLITS["test"]}


def load_fewclue(task: str, split: str, data_dir: str | None = None) -> list[dict]:
  """The records of `<task>/<split>.json` (one JSON object a line) as dicts."""
  path = os.path.join(roots.fewclue_dir(task, data_dir), f"{split}.json")
  if not os.path.isfile(path):
    raise ConfigError(f"fewclue/{task}: split file not found: {path!r} (config keys data.train_split, "
                      f"data.test_split name the split files)")
  return lines.read_json_lines(path)


def fewclue_text(task: str, record: dict) -> str:
  """The text a classifier reads: csldcp abstracts live in 'content', the rest in 'sentence'
  (tnews keywords are left out, as the note's sentence vectors saw only the sentence)."""
  return (record.get("content") if task == "csldcp" else record.get("sentence")) or ""


def fewclue_label_names(task: str, data_dir: str | None = None,
                        splits=tuple(FEWCLUE_SPLITS.values())) -> list[str]:
  """Class names in a fixed order; a record's class index is its position here.

  (iflytek has no label file: its names come from the labels of `splits`.)
  """
  directory = roots.fewclue_dir(task, data_dir)
  if task == "eprstmt":
    return ["Negative", "Positive"]
  if task == "tnews":  # label codes 100..116 with gaps; the index file fixes the order.
    path = os.path.join(directory, "label_index2en2zh.json")
    rows = lines.read_json_lines(path)
    missing = next((i for i, row in enumerate(rows, 1) if "label" not in row), None)
    if missing:
      raise ConfigError(f"{path}, record {missing}: no 'label' field")
    return [str(row["label"]) for row in rows]
  if task == "csldcp":
    return lines.read_text_lines(os.path.join(directory, "labels_all.txt"))
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


def load_fewclue_features(task: str, data_dir: str | None, seed: int, train_split: str = "",
                           test_split: str = "", **options) -> dataset.Dataset:
  files = fewclue_splits({"train_split": train_split, "test_split": test_split})
  names = fewclue_label_names(task, data_dir, tuple(files.values()))
  records = {split: load_fewclue(task, file, data_dir) for split, file in files.items()}
  labels = {split: fewclue_labels(task, records[split], names,  # before the costly features
                                  os.path.join(roots.fewclue_dir(task, data_dir), f"{file}.json"))
            for split, file in files.items()}
  texts = {split: [fewclue_text(task, r) for r in recs] for split, recs in records.items()}
  unlabeled = []
  if os.path.isfile(os.path.join(roots.fewclue_dir(task, data_dir), "unlabeled.json")):
    unlabeled = [fewclue_text(task, r) for r in load_fewclue(task, "unlabeled", data_dir)]
  features, info = fewclue_features(texts["train"], [texts["test"]], unlabeled, seed=seed, **options)
  splits = {"train": {"x": features[0], "y": labels["train"]}, "test": {"x": features[1], "y": labels["test"]}}
  info.update(label_names=names, files=files)
  return dataset.Dataset(f"fewclue/{task}", splits, num_classes=len(names), info=info)



def fewclue_features(train_texts: list[str], other_texts: list[list[str]], unlabeled_texts=(),
                     svd_dim: int = 256, ngram_max: int = 2, use_unlabeled: bool = True,
                     min_df: int = 2, seed: int = 0):
  """Fits TF-IDF + SVD on train (+ unlabeled) text; returns ([train, *others] float32 arrays, info).

  Held-out text is only transformed, never fitted on. The SVD dimension is
  capped below the number of fitted documents (an SVD cannot have more).
  """
  from sklearn.decomposition import TruncatedSVD  # pylint: disable=g-import-not-at-top
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  if ngram_max not in (1, 2, 3) or svd_dim < 1:
    raise ConfigError(f"text features: need ngram_max in 1..3 and svd_dim >= 1 (got {ngram_max}, {svd_dim})")
  fit_texts = list(train_texts) + (list(unlabeled_texts) if use_unlabeled else [])
  vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max), min_df=min_df,
                               sublinear_tf=True, dtype=np.float32)
  tfidf = vectorizer.fit_transform(fit_texts)
  dim = int(min(svd_dim, tfidf.shape[0] - 1, tfidf.shape[1] - 1))
  svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=5, random_state=seed)
  svd.fit(tfidf)
  features = [svd.transform(vectorizer.transform(t)).astype(np.float32)
              for t in [train_texts, *other_texts]]
  info = {"vocab_size": len(vectorizer.vocabulary_), "svd_dim": dim, "fit_documents": len(fit_texts),
          "ngram_range": [1, ngram_max],
          "svd_explained_variance": float(svd.explained_variance_ratio_.sum())}
  return features, info
