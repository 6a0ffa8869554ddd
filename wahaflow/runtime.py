"""Process-wide settings that every wahaflow entry point applies before it does any work."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

POLARS_ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"  # the jemalloc inside Polars' Linux wheels reads this
POLARS_ALLOCATOR_CONF = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0"


def return_freed_memory_promptly() -> None:
    """Have Polars' allocator (jemalloc) give freed pages back within 100 ms, from a background
    thread, instead of after 0.5 s (dirty) and 1 s (muzzy), Polars' own settings, checked only when
    the allocating thread comes back. Must run before Polars is imported (Polars appends the variable
    to its defaults, and the last value of an option wins); an explicit `_RJEM_MALLOC_CONF` wins.

    The frames of a chunk run are freed when the run ends, but jemalloc kept most of their pages for
    the next run, so the process grew from run to run: a sync of a 1,000,000 message account peaked
    at about 520 MB with the default and 455 MB with this setting, in the same time (returning pages
    at once, `dirty_decay_ms:0`, peaks lower but costs the main thread about 10% more time).
    """
    if "polars" in sys.modules:
        log.debug("Polars is already loaded; its allocator keeps its own settings")
        return
    os.environ.setdefault(POLARS_ALLOCATOR_ENV, POLARS_ALLOCATOR_CONF)


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
