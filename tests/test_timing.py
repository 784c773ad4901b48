"""lmsys.timing: the allocator setting that the CPU benchmarks use."""

import subprocess
import sys
import textwrap

import pytest

_RSS_AFTER_FREE = textwrap.dedent("""
    import sys
    import numpy as np
    from lmsys import timing
    if sys.argv[1] == "keep":
        assert timing.keep_freed_memory()
    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    before = rss_mib()
    block = np.ones(64 * 2**20 // 8)   # 64 MiB, above glibc's largest mmap threshold
    del block
    print(rss_mib() - before)
""")


def _rss_growth_after_free(mode):
  out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, mode], capture_output=True, text=True,
                       check=True)
  return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc: Linux only")
def test_keep_freed_memory_keeps_a_freed_large_block_for_reuse():
  # Default glibc: a 64 MiB block is mmapped and unmapped on free (RSS back down), so the next
  # call touches fresh pages again; with keep_freed_memory it stays in the heap for reuse.
  assert _rss_growth_after_free("default") < 16
  assert _rss_growth_after_free("keep") > 48
