"""glibc's allocator tuned for a daemon that runs for months with many threads.

glibc gives threads that allocate at the same time arenas of their own, up to eight per core,
and memory freed in one arena is neither returned to the system nor used by the others. auditd's
watch threads decode lists and events, its probe threads parse status documents of megabytes,
and its writer holds the inventory: each pattern fragments its own arenas. In the soak
(bench/soak.py, 10,000 volumes, 2026-12-05) the daemon held 360-390 MB after 10 minutes with
glibc's default, growing; with two arenas, under 300 MB.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_ARENA_MAX = -8  # mallopt(3)
ARENAS = 2


def limit_arenas(arenas: int = ARENAS, environ: Mapping[str, str] = os.environ) -> bool:
    """At most ``arenas`` malloc arenas from now on, unless MALLOC_ARENA_MAX is set (the
    operator's choice stands). False where there is nothing to tune (not glibc). Called before
    the daemon starts its threads: arenas already made stay."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False  # musl, macOS: another allocator, nothing to set
    return bool(mallopt(M_ARENA_MAX, arenas))
