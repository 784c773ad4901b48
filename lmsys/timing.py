"""One way to time and size compiled code: every benchmark and timed experiment uses it.

    t = timing.benchmark(fn, q, k, v, repeats=5)       # jits fn, compiles once (timed apart)
    t.best_seconds, t.median_seconds, t.compile_seconds
    timing.compiled_memory(fn, q, k, v)["temp_bytes"]   # XLA's working set beyond in/outputs

Why one helper: the timings of different notes are only comparable when they
are taken the same way: compilation excluded (reported on its own), every call
waited for with `jax.block_until_ready` (JAX dispatches asynchronously), and the
best of k runs reported beside the median (the best is the least disturbed by
other work on a shared machine; the median says how noisy the run was).
Speed claims are ratios of two such numbers taken in one process.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timing:
  """Wall-clock seconds of one function: compile apart, then `len(times)` timed calls."""
  compile_seconds: float   # lowering + XLA compilation (jit=True), or first call - best (jit=False)
  first_seconds: float     # the first call after compilation (warm-up: caches, allocation)
  times: tuple[float, ...]

  @property
  def best_seconds(self) -> float:
    return min(self.times)

  @property
  def median_seconds(self) -> float:
    return statistics.median(self.times)

  @property
  def spread(self) -> float:
    """(max - min) / median of the timed calls: how noisy the measurement was."""
    return (max(self.times) - min(self.times)) / self.median_seconds if self.median_seconds else 0.0

  def as_dict(self, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}best_s": self.best_seconds, f"{prefix}median_s": self.median_seconds,
            f"{prefix}compile_s": self.compile_seconds, f"{prefix}runs": len(self.times)}


def _block(out):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.block_until_ready(out)


def benchmark(fn: Callable, *args, repeats: int = 5, target_seconds: float | None = None,
              max_repeats: int | None = None, jit: bool = True, **kwargs) -> Timing:
  """Times `fn(*args, **kwargs)`.

  jit=True: `jax.jit(fn)` is lowered and compiled first (compile_seconds), then
  called once untimed-for-the-best (first_seconds) and `repeats` more times.
  jit=False: `fn` is called as given (it may jit inside, or be host code such
  as scikit-learn); the first call is the warm-up and compile_seconds is its
  excess over the best later call.
  target_seconds: run about that long in total instead (at least 1 and at
  most `max_repeats` timed calls; long calls are timed once).
  """
  if jit:
    import jax  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    call = jax.jit(fn).lower(*args, **kwargs).compile()
    compile_seconds = time.perf_counter() - start
  else:
    call, compile_seconds = fn, None
  start = time.perf_counter()
  _block(call(*args, **kwargs))
  first = time.perf_counter() - start
  if target_seconds is not None:
    repeats = int(target_seconds // max(first, 1e-9))
    repeats = max(1, min(repeats, max_repeats or repeats))
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    _block(call(*args, **kwargs))
    times.append(time.perf_counter() - start)
  if compile_seconds is None:
    compile_seconds = max(first - min(times), 0.0)
  return Timing(compile_seconds=compile_seconds, first_seconds=first, times=tuple(times))


def compiled_memory(fn: Callable, *args, **kwargs) -> dict[str, Any]:
  """XLA's memory analysis of `jax.jit(fn)` at these arguments, in bytes.

  temp_bytes is the working set beyond arguments and outputs: what grows as
  O(L^2) for an attention that forms its score matrix and stays O(L) for one
  that does not. Keys are None where the backend reports nothing.
  """
  import jax  # pylint: disable=g-import-not-at-top
  analysis = jax.jit(fn).lower(*args, **kwargs).compile().memory_analysis()
  get = lambda name: None if analysis is None else getattr(analysis, name, None)
  return {"temp_bytes": get("temp_size_in_bytes"), "argument_bytes": get("argument_size_in_bytes"),
          "output_bytes": get("output_size_in_bytes"), "alias_bytes": get("alias_size_in_bytes"),
          "generated_code_bytes": get("generated_code_size_in_bytes")}


class Stopwatch:
  """Seconds of a block of host code: `with Stopwatch() as sw: ...; sw.seconds`."""

  def __enter__(self):
    self.start = time.perf_counter()
    self.seconds = None
    return self

  def __exit__(self, *exc):
    self.seconds = time.perf_counter() - self.start


def keep_freed_memory() -> bool:
  """Asks glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

  Why: on the CPU backend XLA allocates each call's large buffers (e.g. the
  25 MiB transposes of attention at n = 8192) with malloc; glibc serves blocks
  above its mmap threshold (at most 32 MiB) with fresh mmap pages and unmaps
  them on free, so every call pays the kernel's page faults and zeroing again.
  How much it saves is measured by `python scripts/bench.py causal_linear_attention_kept`
  (docs/performance.md). Equivalent to starting Python with MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=<large>. Call it once, early; it changes this
  process only. Returns False (and does nothing) where malloc is not glibc's.
  """
  import ctypes  # pylint: disable=g-import-not-at-top
  try:
    libc = ctypes.CDLL(None)
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
  # Largest int: never trim the heap's top; 0 mmapped blocks: every block from the heap.
  return bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_max, 0))
