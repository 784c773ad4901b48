"""Line-oriented text files (JSON lines, plain text) read with one error naming file and line."""

from __future__ import annotations

import json
import os

from lmsys.config import ConfigError


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
