"""Python's cyclic garbage collector, set for a daemon whose heap is mostly long-lived, and
timed.

The collector runs a young-generation pass every ``threshold0`` net allocations (700 by
default) and a full pass every hundred of those once the objects that survived to the oldest
generation have grown by a quarter. After each complete list the ingest writer freezes what it
holds (daemon/ingest.py), so frozen objects no longer count towards that quarter, and a full
pass came every 70,000 allocations, each scanning everything made since the last list. A watch
burst allocates about a hundred objects an event. Measured 2026-12-07, same sitting, beside a
soak: bench/rules_eval.py's burst (2,000 PVC changes in batches of 1,000, 10,000 volumes, frozen
as the daemon is) cost 48-74 us a change at 700 and 28-49 at 10,000; in bench/watch_scale.py
the collector ran 6.3 us of each event at 700 (11% of the burst) and 1.0 at 10,000. Garbage
is still freed by reference counting the moment it dies; only cycles wait longer, for at most
10,000 allocations more.

After a list the writer freezes what it holds (``Freezer``): thawed and collected whole at most
once per ``THAW_EVERY``, otherwise only what was made since the last freeze is collected.

``GC_THRESHOLD`` in the environment (``"700"`` or ``"700,10,10"``) is the operator's choice
instead. How long the collector ran, by generation, is ``auditd_gc_seconds_total`` (/metrics).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

THRESHOLD0 = 10_000
ENV = "GC_THRESHOLD"


def tune(environ: Mapping[str, str] = os.environ) -> tuple[int, ...]:
    """Set the collector's thresholds (``GC_THRESHOLD`` if set, else ``THRESHOLD0`` for the
    youngest generation); return them. A malformed variable raises ValueError naming it; an
    empty one counts as unset."""
    raw = environ.get(ENV, "").strip()  # empty, as a template may render it: not set
    thresholds: tuple[int, ...] = (THRESHOLD0, *gc.get_threshold()[1:])
    if raw:
        try:
            thresholds = tuple(int(part) for part in raw.split(","))
        except ValueError:
            thresholds = ()
        if not 1 <= len(thresholds) <= 3 or any(t < 0 for t in thresholds):
            raise ValueError(f"{ENV}={raw!r}: expected one to three whole numbers, e.g. 700,10,10")
    gc.set_threshold(*thresholds)
    return gc.get_threshold()


THAW_EVERY = timedelta(minutes=5)


class Freezer:
    """The collector after each complete list, on the ingest writer's thread.

    The inventory is then mostly long-lived, acyclic dicts. Left in the collected generations,
    every later collection rescans all of them: decoding a watch event cost 3x more
    (bench/watch_scale.py). Frozen, they are still freed by reference counting when replaced;
    only cycle detection skips them. So what the writer holds is frozen after each list.

    Frozen garbage is never freed: a garbage cycle frozen (a session, a response, a traceback
    of any thread), or anything alive at the last freeze that has since died in a cycle (a
    watch stream's response when the watch ends). Relists come every few minutes for months,
    each able to leave some behind (the 2 h soak's RSS grew), so everything is thawed and
    collected first, but at most once per ``thaw_every``: a start's twenty-odd lists end within
    seconds of each other, and a full collection of the heap after each was 15% of the writer's
    time to the first sync (bench/watch_scale.py, 10,000 volumes). In between, only what was
    made since the last freeze is collected before it is frozen."""

    def __init__(self, thaw_every: timedelta = THAW_EVERY) -> None:
        self.thaw_every = thaw_every
        self._thawed_at: datetime | None = None

    def after_list(self, now: datetime) -> None:
        last = self._thawed_at
        if last is None or not last <= now < last + self.thaw_every:
            self._thawed_at = now
            gc.unfreeze()
        gc.collect()
        gc.freeze()


class Timer(Collector):
    """Seconds the collector ran, by generation, since ``start``. The callback runs inside the
    collector, on whichever thread allocated: it adds to plain floats and takes no lock (a
    metric's lock taken there could be one its own thread already holds); /metrics reads them."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.passes = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = min(int(info.get("generation", 2)), 2)
        self.seconds[generation] += time.perf_counter() - self._started
        self.passes[generation] += 1

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "auditd_gc_seconds",
            "Time Python's cyclic garbage collector ran, by generation (2: full passes). It"
            " stops every thread while it runs.",
            labels=["generation"],
        )
        for generation, seconds in enumerate(self.seconds):
            family.add_metric([str(generation)], seconds)
        yield family
