"""Process-wide settings for the processes that run the pipeline (CLI, job and point workers).

glibc's allocator serves blocks above its mmap threshold with a fresh ``mmap`` and gives them
back with ``munmap`` when freed; its threshold adapts only up to 32 MiB. A whole CT volume is
segmented and converted in batches whose tensors are 10-70 MiB, so every batch mapped new pages
and the kernel zeroed them again: 2.4 million page faults and 5 s of system time per 275-frame
segmentation on 2 cores (issue 17, ``bench/bench_compress_volume.py``). Raising both the mmap and
the trim threshold to 64 MiB lets those blocks be reused from the heap; the largest arrays (whole
volumes) are still mapped and returned whole. Results are unchanged: only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap and freed heap tops up to it are kept (bytes).
HEAP_BLOCK_BYTES = 64 * 2**20


def configure_allocator(block_bytes: int = HEAP_BLOCK_BYTES) -> bool:
    """Set glibc's mmap and trim thresholds to ``block_bytes`` in this process.

    Returns ``True`` when applied; ``False`` off glibc, or when the person running the process
    set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` themselves (theirs win).
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt tunables)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(block_bytes))) and bool(mallopt(_M_TRIM_THRESHOLD, int(block_bytes)))


__all__ = ["HEAP_BLOCK_BYTES", "configure_allocator"]
