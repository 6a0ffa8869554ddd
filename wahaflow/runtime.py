"""Process-wide settings that every wahaflow entry point applies before it does any work."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 1024 * 1024


def limit_heap_fragmentation() -> None:
    """Fix glibc's mmap threshold at 1 MiB (no-op where the C library is not glibc).

    glibc raises that threshold to the size of the largest block freed so far (up to 32 MiB). From
    then on the multi-megabyte buffers of a chunk run (COPY blocks, response bodies) come from the
    heap, between small long-lived allocations, and are never given back: a sync of a 1,000,000
    message account grew by about 30 MB per chunk run and peaked at 800 MB. With the threshold fixed,
    such buffers are mapped and unmapped, and that sync peaks about 200 MB lower.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    if not mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; heap fragmentation not limited")
