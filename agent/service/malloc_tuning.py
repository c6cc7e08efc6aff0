"""glibc malloc settings for the long-running agent, applied before its threads exist.

Two glibc defaults cost the agent resident memory it never gives back (measured against a
250-pod lab under 20 concurrent scrapers, bench/MEMORY.md):

- Arenas: every thread that calls malloc while another holds an arena gets an arena of its own,
  up to 8 per core. The agent's threads (scheduler pool, reconcile worker, discovery, gRPC's
  C threads, one HTTP thread per scrape) ended up with 16 arenas, each keeping freed chunks
  resident. Python allocates under the GIL anyway, so arenas buy almost no parallelism here.
- The mmap threshold: a freed mmap'd block raises the threshold to its size (up to 32 MiB), so
  after the first /metrics render its ~900 KiB buffers come from the arenas instead of mmap,
  and their pages stay behind as fragmentation when the render's objects are freed. A fixed
  threshold sends every block of 128 KiB or more to mmap, back to the kernel on free.

An operator's own MALLOC_* or GLIBC_TUNABLES malloc settings win: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
"""Two arenas: the main thread's and one shared by all others (gRPC's C threads allocate
without the GIL, so they may still contend a little; one arena would serialize them fully)."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's initial threshold, kept fixed instead of growing with freed blocks."""

_OPERATOR_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def operator_tuned(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True when the environment already tunes glibc malloc (MALLOC_* or glibc.malloc tunables)."""
    if any(name in environ for name in _OPERATOR_ENV):
        return True
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def tune_malloc(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, int]:
    """Apply ARENA_MAX and MMAP_THRESHOLD_BYTES; return what was applied ({} when nothing was:
    not glibc, or the operator tuned malloc through the environment)."""
    if operator_tuned(environ):
        log.debug("malloc: leaving the environment's settings alone")
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt): nothing to tune
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = {}
    for name, param, value in (
        ("arena_max", M_ARENA_MAX, ARENA_MAX),
        ("mmap_threshold_bytes", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ):
        if mallopt(param, value) == 1:  # mallopt returns 1 on success
            applied[name] = value
    log.debug("malloc: %s", applied)
    return applied
