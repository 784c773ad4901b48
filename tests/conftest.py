"""Shared test setup: the repository root, the real-data root, and fixture data.

Tests that read FewCLUE / KgCLUE / the BERT vocabulary run on fixture data that
`tests/fixture_data.py` writes into a temporary directory (fixture
`fixture_data_env` points $LMSYS_DATA_DIR at it), so the suite passes on a fresh
clone without the real files. The real-data root is $LMSYS_DATA_DIR, or
`../shared/data` next to the repository when it exists; the few tests that check
the real files themselves are marked `needs_real_data` and skipped, with the
reason shown, only when it is absent.

LMSYS_TEST_NO_REAL_DATA=1 hides the real data (unsets $LMSYS_DATA_DIR and
ignores ../shared/data) to check what a user without it sees.
"""

import os
import pathlib

import pytest

from tests import fixture_data

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"

NO_REAL_DATA = os.environ.get("LMSYS_TEST_NO_REAL_DATA", "").strip().lower() not in ("", "0", "false")


def _real_data_root():
  """$LMSYS_DATA_DIR, else ../shared/data next to the repository; None when hidden or absent."""
  if NO_REAL_DATA:
    return None
  root = os.environ.get("LMSYS_DATA_DIR") or (str(_SHARED) if _SHARED.is_dir() else None)
  return root if root and os.path.isdir(os.path.join(root, "fewclue")) else None


# The real-data root (holding fewclue/ and kgclue/), or None. Read here, set for the session by
# the `real_data_root` fixture below (nothing is set in the environment at import).
REAL_DATA_DIR = _real_data_root()

needs_real_data = pytest.mark.skipif(
    REAL_DATA_DIR is None,
    reason=("real data hidden by LMSYS_TEST_NO_REAL_DATA=1" if NO_REAL_DATA else
            "no real data: set $LMSYS_DATA_DIR to a folder holding fewclue/ and kgclue/ "
            "(README: 'Real data'); the fixture-data tests cover the code paths"))

# For checks that hold on CPU only, e.g. the FLOP counter against XLA's cost analysis (XLA
# counts what the counter counts on CPU; GPU backends fuse and count otherwise). The condition
# is a string, evaluated when the test runs, so collecting tests does not start a backend.
cpu_only = pytest.mark.skipif("__import__('jax').default_backend() != 'cpu'",
                              reason="holds on the CPU backend only (XLA's CPU cost analysis)")


@pytest.fixture(scope="session", autouse=True)
def real_data_root():
  """For the whole session: $LMSYS_DATA_DIR is the real-data root, or unset when it is hidden."""
  with pytest.MonkeyPatch.context() as patch:
    if REAL_DATA_DIR:
      patch.setenv("LMSYS_DATA_DIR", REAL_DATA_DIR)
    elif NO_REAL_DATA:
      patch.delenv("LMSYS_DATA_DIR", raising=False)
    yield REAL_DATA_DIR


@pytest.fixture
def repo_root():
  return REPO


@pytest.fixture(scope="session")
def fixture_data_dir(tmp_path_factory):
  """A data root in the real layout with tiny deterministic contents (tests/fixture_data.py)."""
  root = tmp_path_factory.mktemp("lmsys_fixture_data")
  fixture_data.write_fixture_data(root)
  return root


@pytest.fixture
def fixture_data_env(fixture_data_dir, monkeypatch):
  """$LMSYS_DATA_DIR points at the fixture data for this test (and its subprocesses)."""
  monkeypatch.setenv("LMSYS_DATA_DIR", str(fixture_data_dir))
  return fixture_data_dir
