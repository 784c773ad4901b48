"""One writer per workdir: a lock file naming the host and process that hold it.

Two runs writing one workdir interleave their metrics and race each other's
checkpoint saves. The runner takes this lock before it writes anything (on
multi-host runs, process 0 holds it for all) and releases it at exit. A lock
left by a process that no longer exists on this host is stale and taken over;
a lock held by another host cannot be checked from here and is reported.

Taking over is atomic: the lock file appears complete (a hard link to a file
already written, which fails where one exists), and a stale one is removed
only under an exclusive `flock` on `LOCK.takeover` (released by the kernel if
its holder dies), after checking again that it still names the same dead
process. So of several processes racing for a dead owner's lock exactly one
gets it, and none removes a lock that a live process has just taken.

The lock is local-only, by design: hard links, `flock` and a process id check
need a local (or POSIX network) file system and a host to ask. The runner,
which takes it, accepts local workdirs only; an object store (gs://) has none
of these, and its writers (lmsys.trainer, lmsys.metrics) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from lmsys.config import ConfigError

LOCK_NAME = "LOCK"
RETRY_SECONDS = 5.0  # a lock that stays unreadable this long is reported as not taken


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def read_holder(path: str) -> dict:
  """The lock file's {'host', 'pid', 'since'}; {} when it is missing or not written yet."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def _is_stale(holder: dict) -> bool:
  """A lock of a process of this host that no longer exists."""
  return (holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
          and not _alive(holder["pid"]))


@contextlib.contextmanager
def _exclusive(path: str):
  """Holds an exclusive flock on `path` (created, and removed on the way out).

  A waiter may get the lock on a file its holder has just removed; it then tries again on the
  file now at `path`, so that only one process at a time is inside.
  """
  while True:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
      if os.path.samestat(os.fstat(fd), os.stat(path)):
        break
    except FileNotFoundError:
      pass
    os.close(fd)
  try:
    yield
  finally:
    os.remove(path)
    os.close(fd)


def _create_complete(path: str, content: dict) -> bool:
  """Creates `path` holding `content`, never visible empty or half-written; False if it exists.

  The content goes to a file of this process first, then a hard link makes it `path` (which,
  like O_EXCL, fails if `path` exists). Where the filesystem has no hard links: O_EXCL, then
  the write (a reader may then see the file empty for a moment, and report it as held).
  """
  own = f"{path}.{content['host']}.{content['pid']}"
  with open(own, "w") as f:
    json.dump(content, f)
  try:
    os.link(own, path)
    return True
  except FileExistsError:
    return False
  except OSError:  # no hard links here
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(content, f)
    return True
  finally:
    os.remove(own)


class WorkdirLock:
  """`with WorkdirLock(workdir): ...` or acquire() / release(); acquire raises ConfigError."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.held = False

  def acquire(self) -> WorkdirLock:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    deadline = time.monotonic() + RETRY_SECONDS
    while time.monotonic() < deadline:
      if _create_complete(self.path, me):
        self.held = True
        return self
      holder = read_holder(self.path)
      if _is_stale(holder):
        with _exclusive(self.path + ".takeover"):
          if read_holder(self.path) == holder:  # not already taken over by another process
            os.remove(self.path)
        continue
      if not holder:  # removed (or, without hard links, not written yet) since we looked: again
        time.sleep(0.01)
        continue
      raise ConfigError(
          f"workdir {os.path.dirname(self.path)!r} is in use by pid {holder.get('pid', '?')} on host "
          f"{holder.get('host', '?')} since {holder.get('since', '?')} (lock file {self.path}; "
          f"delete it only if that run is gone)")
    raise ConfigError(f"workdir {os.path.dirname(self.path)!r} is locked by a lock file that names no "
                      f"holder ({self.path}; delete it only if no run is using this workdir)")

  def release(self) -> None:
    if self.held:
      holder = read_holder(self.path)
      if holder.get("pid") == os.getpid():
        os.remove(self.path)
      self.held = False

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
