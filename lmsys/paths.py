"""Run directories as `etils.epath.Path`: a local folder or an object store (`gs://...`) alike.

The trainer, the checkpoints and the metrics writer reach the workdir through these
paths (orbax takes them as they are), so a run on a cloud machine can write to a bucket.
Code that needs a local file system (the workdir lock's `flock`, a process id check)
asks `is_local` first.
"""

from __future__ import annotations

import os

from etils import epath


def is_local(path: epath.PathLike) -> bool:
  """Whether `path` is on the local file system (no `scheme://` prefix such as gs:// or s3://).

  Args:
    path: a string or path-like.

  Returns:
    False for a URI with a scheme, True otherwise.
  """
  return "://" not in os.fspath(path)


def as_path(path: epath.PathLike) -> epath.Path:
  """`path` as an epath.Path; a local one made absolute (a later chdir does not move it).

  Args:
    path: a string, pathlib or epath path; local or `scheme://...`.

  Returns:
    The epath.Path (a URI is kept as it is: epath's `resolve` would treat it as a local name).
  """
  if not is_local(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(os.fspath(path)))
