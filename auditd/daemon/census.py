"""What the process holds, on request: the first question when a long-running daemon's RSS grows.

`kill -USR2 <pid>` logs one line ``census {...}``: the gc-tracked objects by type (count and
shallow bytes, largest counts first), pymalloc's blocks in use and the arenas it holds them in,
and glibc's heap split into bytes in use and bytes free but held (fragmentation). Two censuses
an hour apart say whether a growth is Python objects kept (a type's count climbs), or an
allocator holding freed memory (in use flat; glibc's free held, or pymalloc's arenas,
climbing). Taking one walks every tracked object once (about a second at 10,000 volumes) on
the main thread, which only waits for a stop: ingest is not paused.

The ingest freezes what it holds after each list (gc.freeze: the collector skips it), and
gc.get_objects() does not see frozen objects; so a census does what a list's end does (thaw,
collect, freeze again) and counts in between: live objects only, frozen ones included.

Objects the collector does not track (str, bytes, int, float) show only as pymalloc blocks. When
the daemon runs under tracemalloc (``AUDITD_TRACEMALLOC=10``: slower, and more memory), each
census also names the allocation sites (their tracebacks) whose memory grew most since the
census before: that is what says who keeps the untracked blocks. (Not PYTHONTRACEMALLOC: the
children auditd runs, such as the simulated `rbd`, would inherit it and slow down.)
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
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
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    if objects is None:
        gc.unfreeze()
        gc.collect()
        objects = gc.get_objects()
        gc.freeze()
    for o in objects:
        name = type(o).__qualname__
        count[name] += 1
        size[name] += sys.getsizeof(o, 0)
    h = malloc.heap()
    grown = allocations.grown() if allocations is not None else None
    return Census(
        count,
        size,
        sys.getallocatedblocks(),
        h and h.in_use,
        h and h.mmapped,
        h and h.free_held,
        malloc.pymalloc(),
        grown,
    )


def summary(c: Census, top: int = 25) -> dict[str, Any]:
    """The census as one JSON-able document: totals and the ``top`` types by count."""
    return {
        "objects": sum(c.count.values()),
        "py_blocks": c.py_blocks,
        "heap_in_use": c.heap_in_use,
        "heap_mmapped": c.heap_mmapped,
        "heap_free_held": c.heap_free_held,
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
