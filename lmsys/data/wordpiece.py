"""BERT's WordPiece tokenisation from a vocab.txt, by the `tokenizers` library (note 5).

    tokenizer = load_tokenizer("bert-base-chinese/vocab.txt")
    batch = encode_pairs(tokenizer, prompts, texts, max_length=128)
    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]   # int32 [N, 128]

The same tokenisation as Google's BERT and Hugging Face's `BertTokenizer`
(basic cleaning, every CJK character its own word, optional lowercasing and
accent stripping, greedy longest-match WordPiece), so ids match a real
checkpoint's vocabulary. Pairs are `[CLS] a [SEP] b [SEP]` with token types
0 for `[CLS] a [SEP]` and 1 for `b [SEP]`; too-long inputs lose tokens from
the end of the longer side first ("longest first"), then padding with id 0.
"""

from __future__ import annotations

import os

import numpy as np

from lmsys import data
from lmsys.config import ConfigError


def load_tokenizer(vocab_path: str, lowercase: bool = True):
  """A `tokenizers.BertWordPieceTokenizer` over vocab.txt (one token a line, id = line number).

  lowercase=True as bert-base-chinese and uncased models (accents stripped too); False for
  cased models.
  """
  from tokenizers import BertWordPieceTokenizer  # pylint: disable=g-import-not-at-top
  vocab_path = os.fspath(vocab_path)
  if not os.path.isfile(vocab_path):
    raise ConfigError(f"vocabulary not found: {vocab_path}")
  data.read_vocab(vocab_path)  # empty, or a line not UTF-8: one error naming file and line
  try:
    return BertWordPieceTokenizer(vocab_path, lowercase=lowercase)
  except Exception as e:  # pylint: disable=broad-except  (e.g. no [SEP] in the vocabulary)
    raise ConfigError(f"{vocab_path}: not a BERT vocabulary ({e})") from None


def encode_pairs(tokenizer, firsts: list[str], seconds: list[str] | None,
                 max_length: int) -> dict[str, np.ndarray]:
  """`[CLS] a [SEP] (b [SEP])` for each a in firsts (b in seconds when given).

  -> {"input_ids", "token_type_ids", "attention_mask"}: int32 [N, max_length], padded
  with 0; longest-first truncation. The tokenizer's own truncation/padding settings
  are set for the call and restored after it.
  """
  firsts = list(firsts)
  seconds = None if seconds is None else list(seconds)
  if seconds is not None and len(seconds) != len(firsts):
    raise ConfigError(f"encode_pairs: {len(firsts)} first texts but {len(seconds)} second texts")
  specials = 3 if seconds is not None else 2
  if max_length <= specials:
    raise ConfigError(f"encode_pairs: max_length={max_length} leaves no room for text "
                      f"beside {specials} special tokens")
  saved_truncation, saved_padding = tokenizer.truncation, tokenizer.padding
  tokenizer.enable_truncation(max_length, strategy="longest_first")
  tokenizer.enable_padding(length=max_length, pad_id=0, pad_type_id=0,
                           pad_token=tokenizer.id_to_token(0) or "[PAD]")
  try:
    inputs = firsts if seconds is None else list(zip(firsts, seconds))
    encodings = tokenizer.encode_batch(inputs) if inputs else []
  finally:
    if saved_truncation is None:
      tokenizer.no_truncation()
    else:  # the wrapper's enable_truncation takes these three (direction stays 'right')
      tokenizer.enable_truncation(**{k: saved_truncation[k] for k in ("max_length", "stride", "strategy")})
    if saved_padding is None:
      tokenizer.no_padding()
    else:
      tokenizer.enable_padding(**saved_padding)
  field = lambda name: np.asarray([getattr(e, name) for e in encodings],
                                  np.int32).reshape(len(encodings), max_length)
  return {"input_ids": field("ids"), "token_type_ids": field("type_ids"),
          "attention_mask": field("attention_mask")}
