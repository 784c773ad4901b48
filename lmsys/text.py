"""Text features lmsys computes itself (no pretrained encoder can be had here).

Character n-gram TF-IDF, fitted on the training text (plus unlabeled text of
the same task where there is some), reduced by truncated SVD (LSA) to a few
hundred dense dimensions: a stand-in for the 768-d sentence vectors of note 1.
Chinese has no spaces, so characters and character pairs are the natural units.
"""

from __future__ import annotations

import numpy as np


def fewclue_features(train_texts: list[str], other_texts: list[list[str]], unlabeled_texts=(),
                     svd_dim: int = 256, ngram_max: int = 2, use_unlabeled: bool = True,
                     min_df: int = 2, seed: int = 0):
  """Fits TF-IDF + SVD on train (+ unlabeled) text; returns ([train, *others] float32 arrays, info).

  Held-out text is only transformed, never fitted on. The SVD dimension is
  capped below the number of fitted documents (an SVD cannot have more).
  """
  from sklearn.decomposition import TruncatedSVD  # pylint: disable=g-import-not-at-top
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  from lmsys.config import ConfigError  # pylint: disable=g-import-not-at-top
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
