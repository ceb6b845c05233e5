"""What the process holds, on request: the first question when a long-running daemon's RSS grows.

`kill -USR2 <pid>` logs one line ``census {...}``: the gc-tracked objects by type (count and
shallow bytes, largest counts first), pymalloc's blocks in use and the arenas it holds them in,
and glibc's heap split into bytes in use and bytes free but held (fragmentation). Two censuses
an hour apart say whether a growth is Python objects kept (a type's count climbs), or an
allocator holding freed memory (in use flat; glibc's free held, or pymalloc's arenas,
climbing). Ingest is not paused.

The walk by type happens in a forked child, never in the daemon. gc.get_objects() returns
every tracked object, among them a tuple another thread is still filling (CPython tracks a
tuple at PyTuple_New); the walk takes about a second, the other threads run during it, and a
thread that resizes its tuple while the list holds it gets ``SystemError: bad argument to
internal function`` (bpo-15108). In the soak (2026-12-06) that quarantined a good probe of
10,000 images. The child has no other threads, so nothing it lists is being built; the daemon
only waits for the counts on a pipe. The cost is the child's copy-on-write: the walk touches
every object's header, so for about a second the pair holds up to the Python heap's size
twice (about 200 MB more at 10,000 volumes): mind it under a tight memory limit.

The ingest freezes what it holds after each list (gc.freeze: the collector skips it), and
gc.get_objects() does not see frozen objects; so a census collects (thaw, collect, freeze
again, as a list's end does) before the allocator totals, and the child thaws before it lists:
live objects only, frozen ones included.

Objects the collector does not track (str, bytes, int, float) show only as pymalloc blocks. When
the daemon runs under tracemalloc (``AUDITD_TRACEMALLOC=10``: slower, and more memory), each
census also names the allocation sites (their tracebacks) whose memory grew most since the
census before: that is what says who keeps the untracked blocks. (Not PYTHONTRACEMALLOC: the
children auditd runs, such as the simulated `rbd`, would inherit it and slow down.)
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from auditd.daemon import malloc


@dataclass(frozen=True)
class Census:
    count: Counter[str] = field(default_factory=Counter)
    size: Counter[str] = field(default_factory=Counter)
    py_blocks: int = 0
    heap_in_use: int | None = None  # glibc's mallinfo2: None on another allocator
    heap_mmapped: int | None = None
    heap_free_held: int | None = None
    pymalloc: malloc.Pymalloc | None = None  # its arenas: outside glibc's heap
    sqlite_in_use: int | None = None  # of glibc's heap in use, what SQLite holds
    # Allocation sites whose memory grew most since the previous census (all held, at the first):
    # [bytes grown, blocks grown, "file:line < file:line ..." most recent frame first]
    allocations: list[tuple[int, int, str]] | None = None


TRACE_ENV = "AUDITD_TRACEMALLOC"


def start_tracing(value: str | None) -> int:
    """Trace allocations with ``value`` frames (the environment's AUDITD_TRACEMALLOC), if set."""
    if not value:
        return 0
    try:
        frames = int(value)
    except ValueError:
        raise ValueError(f"{TRACE_ENV}={value!r}: want a number of frames, such as 10") from None
    if frames > 0:
        tracemalloc.start(frames)
    return frames


class Allocations:
    """Allocation sites' growth between two censuses; only while tracemalloc traces.

    It holds the previous snapshot (one per process: the SIGUSR2 handler keeps one of these), so
    the growth is measured between the censuses an operator asked for."""

    def __init__(self, top: int = 15, frames: int = 6) -> None:
        self.top, self.frames = top, frames
        self._last: tracemalloc.Snapshot | None = None

    def grown(self) -> list[tuple[int, int, str]] | None:
        if not tracemalloc.is_tracing():
            return None
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        last, self._last = self._last, snap
        if last is None:
            return [
                (s.size, s.count, self._where(s.traceback))
                for s in snap.statistics("traceback")[: self.top]
            ]
        return [
            (s.size_diff, s.count_diff, self._where(s.traceback))
            for s in snap.compare_to(last, "traceback")[: self.top]
        ]

    def _where(self, tb: tracemalloc.Traceback) -> str:
        return " < ".join(f"{_short(f.filename)}:{f.lineno}" for f in reversed(tb[-self.frames :]))


def _short(path: str) -> str:
    """A frame's file from its package on (``site-packages/`` and the checkout's prefix go)."""
    for marker in ("site-packages" + os.sep, "lib" + os.sep + "python"):
        if marker in path:
            return path.split(marker, 1)[1]
    here = os.path.dirname(os.path.dirname(os.path.dirname(__file__))) + os.sep
    return path.removeprefix(here)


def take(objects: Iterable[object] | None = None, allocations: Allocations | None = None) -> Census:
    """The census of ``objects``, or of the whole process (counted in a forked child) when None.
    Raises CensusError when the child does not answer."""
    if objects is None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        count, size = _count_in_child()
    else:
        count, size = _count(objects)
    h = malloc.heap()
    grown = allocations.grown() if allocations is not None else None
    return Census(
        count,
        size,
        sys.getallocatedblocks(),
        heap_in_use=h and h.in_use,
        heap_mmapped=h and h.mmapped,
        heap_free_held=h and h.free_held,
        pymalloc=malloc.pymalloc(),
        sqlite_in_use=malloc.sqlite_in_use(),
        allocations=grown,
    )


class CensusError(Exception):
    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid  # the counting child's, once there was one


# A walk of 400,000 objects takes about a second; a child still counting after this is stuck
# (forking a threaded process can leave it a lock no thread will release).
CHILD_TIMEOUT = 120.0


def _count(objects: Iterable[object]) -> tuple[Counter[str], Counter[str]]:
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for o in objects:
        name = type(o).__qualname__
        count[name] += 1
        size[name] += sys.getsizeof(o, 0)
    return count, size


def _count_in_child(timeout: float = CHILD_TIMEOUT) -> tuple[Counter[str], Counter[str]]:
    """Every live object's type counted in a forked child (see the module's docstring)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns that forking a threaded process may deadlock the child: it may, which is
        # why the child only counts and writes, and why the parent gives up after ``timeout``.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: no other thread runs here, and it must never return
        code = 1
        try:
            os.close(r)
            gc.unfreeze()
            count, size = _count(gc.get_objects())
            data = memoryview(json.dumps([count, size]).encode())
            while data:
                data = data[os.write(w, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    try:
        ready = select.poll()  # not select(): a daemon holding 1,024 fds could not wait on r
        ready.register(r, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not ready.poll(left * 1000):
                os.kill(pid, signal.SIGKILL)
                raise CensusError(
                    f"the counting child {pid} gave no answer in {timeout:.0f} s", pid
                )
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not chunks:
        raise CensusError(f"the counting child failed (wait status {status})", pid)
    count, size = json.loads(b"".join(chunks))
    return Counter(count), Counter(size)


def summary(c: Census, top: int = 25) -> dict[str, Any]:
    """The census as one JSON-able document: totals and the ``top`` types by count."""
    return {
        "objects": sum(c.count.values()),
        "py_blocks": c.py_blocks,
        "heap_in_use": c.heap_in_use,
        "heap_mmapped": c.heap_mmapped,
        "heap_free_held": c.heap_free_held,
        "sqlite_in_use": c.sqlite_in_use,
        "pymalloc_held": c.pymalloc and c.pymalloc.held,
        "pymalloc_in_blocks": c.pymalloc and c.pymalloc.in_blocks,
        "pymalloc_arenas_peak": c.pymalloc and c.pymalloc.arenas_peak,
        "types": {name: [n, c.size[name]] for name, n in c.count.most_common(top)},
        **({} if c.allocations is None else {"allocations": c.allocations}),
    }


def growth(before: dict[str, Any], after: dict[str, Any], top: int = 10) -> list[str]:
    """Lines naming what grew between two summaries: totals, then the types whose count grew
    most (a type outside a summary's top counts as 0 there)."""
    lines = []
    for key in (
        "objects",
        "py_blocks",
        "heap_in_use",
        "heap_mmapped",
        "heap_free_held",
        "sqlite_in_use",
        "pymalloc_held",
        "pymalloc_in_blocks",
    ):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None:
            lines.append(f"{key}: {a:,} -> {b:,} ({b - a:+,})")
    old, new = before["types"], after["types"]
    deltas = sorted(
        ((new[t][0] - old.get(t, [0, 0])[0], t) for t in new), key=lambda d: d[0], reverse=True
    )
    for d, t in deltas[:top]:
        if d > 0:
            lines.append(f"  {t}: {old.get(t, [0])[0]:,} -> {new[t][0]:,} ({d:+,})")
    if after.get("allocations"):
        lines.append("allocation sites that grew most (tracemalloc), bytes and blocks:")
        lines += [f"  {b:+,} B {n:+,}: {where}" for b, n, where in after["allocations"]]
    return lines
