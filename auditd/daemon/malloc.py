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
from typing import Any, NamedTuple

M_ARENA_MAX = -8  # mallopt(3)
M_MMAP_THRESHOLD = -3
ARENAS = 2
# Blocks this large or larger are mmapped, and unmapped when freed. glibc starts at 128 KiB but
# raises the threshold to the size of each mmapped block freed (up to 32 MiB): after the first
# probe frees its megabytes of `rbd --format json`, the next probes' buffers come from the heap,
# and each leaves a hole the next live block pins. Fixing the threshold (which also stops the
# raising) sends them back to the system whole.
MMAP_THRESHOLD = 256 * 1024


def _glibc(function: str) -> Any | None:
    """glibc's ``function``, or None on another allocator (musl, macOS) or an older glibc."""
    try:
        return getattr(ctypes.CDLL("libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def _mallopt(param: int, value: int, env_var: str, environ: Mapping[str, str]) -> bool:
    """mallopt(param, value), unless ``env_var`` holds the operator's choice (glibc read it at
    start-up, and it stands). False where nothing was tuned (the variable, or not glibc)."""
    if env_var in environ:
        return False
    mallopt = _glibc("mallopt")
    return mallopt is not None and bool(mallopt(param, value))


def limit_arenas(arenas: int = ARENAS, environ: Mapping[str, str] = os.environ) -> bool:
    """At most ``arenas`` malloc arenas from now on, unless MALLOC_ARENA_MAX is set. Called
    before the daemon starts its threads: arenas already made stay."""
    return _mallopt(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX", environ)


def fix_mmap_threshold(
    threshold: int = MMAP_THRESHOLD, environ: Mapping[str, str] = os.environ
) -> bool:
    """Blocks of ``threshold`` bytes or more mmapped from now on, whatever is freed, unless
    MALLOC_MMAP_THRESHOLD_ is set."""
    return _mallopt(M_MMAP_THRESHOLD, threshold, "MALLOC_MMAP_THRESHOLD_", environ)


# How often the daemon gives glibc's free memory back (runner.py). A trim walks the heaps under
# their locks: milliseconds at a few hundred MB, once a minute.
TRIM_EVERY = 60.0


def trim() -> bool:
    """Give back to the system the memory glibc holds free inside its heaps: malloc_trim(0),
    which since glibc 2.8 releases every free page, not only the heap's top. glibc returns
    memory only from the top of a heap, so a heap whose top is in use keeps everything freed
    below it: each probe's parse of a pool's status, each relist's decode, leaves megabytes.
    Seventy minutes into a 2-hour soak (2026-12-05) glibc's free-but-held memory had doubled
    (27 -> 52 MB) with the Python objects flat. Trimming does not stop the soak's RSS growth,
    which its end showed to be small objects kept (README, "soak"). False where there is
    nothing to trim (not glibc)."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class Heap(NamedTuple):
    """glibc's heap, from mallinfo2 (glibc 2.33+)."""

    in_use: int  # allocated from the arenas, plus the mmapped blocks
    mmapped: int  # the large blocks, each given back whole on free
    free_held: int  # free inside the arenas, not given back


def heap() -> Heap | None:
    """glibc's heap now; None on another allocator."""
    mallinfo2 = _glibc("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _Mallinfo2
    m = mallinfo2()
    return Heap(int(m.uordblks + m.hblkhd), int(m.hblkhd), int(m.fordblks))


class Pymalloc(NamedTuple):
    """Python's own allocator for objects of up to 512 bytes: arenas mmapped apart from glibc's
    heap (so mallinfo2 does not see them), each given back only when every block in it is free.
    A peak of short-lived small objects can leave arenas pinned by a few live blocks each:
    RSS that neither the objects' count nor glibc's heap explains."""

    arenas: int  # allocated now
    arenas_peak: int  # the most ever allocated at once
    held: int  # bytes: the arenas allocated now
    in_blocks: int  # bytes in blocks in use


_STATS = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_peak",
    "# bytes in allocated blocks": "in_blocks",
}


def pymalloc() -> Pymalloc | None:
    """pymalloc's arenas now, from CPython's own statistics (the obmalloc part of
    sys._debugmallocstats, written to a FILE of our own rather than to the daemon's stderr);
    None where they cannot be read (not CPython, not glibc, pymalloc off)."""
    stats = getattr(ctypes.pythonapi, "_PyObject_DebugMallocStats", None)
    found = {name: _glibc(name) for name in ("tmpfile", "fflush", "fileno", "fclose")}
    if stats is None or None in found.values():
        return None
    libc: dict[str, Any] = {name: f for name, f in found.items() if f is not None}
    libc["tmpfile"].restype = ctypes.c_void_p
    for name in ("fflush", "fileno", "fclose"):
        libc[name].argtypes = [ctypes.c_void_p]
    stats.argtypes, stats.restype = [ctypes.c_void_p], ctypes.c_int
    out = libc["tmpfile"]()
    if not out:
        return None
    try:
        if not stats(out):  # 0: pymalloc is not the allocator (PYTHONMALLOC=malloc)
            return None
        libc["fflush"](out)
        text = os.pread(libc["fileno"](out), 1 << 20, 0).decode(errors="replace")
    finally:
        libc["fclose"](out)
    values: dict[str, int] = {}
    arena_size = 0
    for line in text.splitlines():
        label, _, number = line.partition("=")
        label = label.strip()
        if label in _STATS:
            values[_STATS[label]] = int(number.strip().replace(",", ""))
        elif label.endswith("bytes/arena"):  # "64 arenas * 1048576 bytes/arena"
            arena_size = int(label.split("*")[1].split()[0])
    if len(values) != len(_STATS) or not arena_size:
        return None
    return Pymalloc(held=values["arenas"] * arena_size, **values)


def sqlite_in_use() -> int | None:
    """Bytes SQLite holds now, in glibc's heap, for every connection of the process (page
    caches, prepared statements, schemas): sqlite3_memory_used of the library Python's sqlite3
    module runs on. None where it cannot be read."""
    try:
        import _sqlite3

        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return int(used())
