"""Shared test setup: the real-data root and the repository root."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"
if "LMSYS_DATA_DIR" not in os.environ and _SHARED.is_dir():
  os.environ["LMSYS_DATA_DIR"] = str(_SHARED)


@pytest.fixture
def repo_root():
  return REPO
