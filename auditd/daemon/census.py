"""What the process holds, on request: the first question when a long-running daemon's RSS grows.

`kill -USR2 <pid>` logs one line ``census {...}``: the gc-tracked objects by type (count and
shallow bytes, largest counts first), pymalloc's blocks in use, and glibc's heap split into
bytes in use and bytes free but held (fragmentation). Two censuses an hour apart say whether a
growth is Python objects kept (a type's count climbs), or the allocator holding freed memory
(in use flat, free held climbing). Taking one walks every tracked object once (about a second at
10,000 volumes) on the main thread, which only waits for a stop: ingest is not paused.

The ingest freezes what it holds after each list (gc.freeze: the collector skips it), and
gc.get_objects() does not see frozen objects; so a census does what a list's end does (thaw,
collect, freeze again) and counts in between: live objects only, frozen ones included.
"""

from __future__ import annotations

import gc
import sys
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
    heap_free_held: int | None = None


def take(objects: Iterable[object] | None = None) -> Census:
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
    in_use, free_held = malloc.heap()
    return Census(count, size, sys.getallocatedblocks(), in_use, free_held)


def summary(c: Census, top: int = 25) -> dict[str, Any]:
    """The census as one JSON-able document: totals and the ``top`` types by count."""
    return {
        "objects": sum(c.count.values()),
        "py_blocks": c.py_blocks,
        "heap_in_use": c.heap_in_use,
        "heap_free_held": c.heap_free_held,
        "types": {name: [n, c.size[name]] for name, n in c.count.most_common(top)},
    }


def growth(before: dict[str, Any], after: dict[str, Any], top: int = 10) -> list[str]:
    """Lines naming what grew between two summaries: totals, then the types whose count grew
    most (a type outside a summary's top counts as 0 there)."""
    lines = []
    for key in ("objects", "py_blocks", "heap_in_use", "heap_free_held"):
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
    return lines
