"""The watchers' hand-off to the writer: a bounded queue the writer empties a batch at a time."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


class Handoff(queue.Queue[T]):
    """``queue.Queue``, plus ``take``: what is waiting, up to a limit, under one lock.

    The writer took its batches one ``get_nowait`` at a time: a lock, a condition and a
    notify for each item, about a microsecond of the writer's thread per watch event
    (bench/watch_scale.py), for up to 1,000 items a batch."""

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items, oldest first, without waiting; producers blocked on a full
        queue are woken for the room made."""
        with self.mutex:
            n = min(limit, self._qsize())
            items = [self._get() for _ in range(n)]
            if n:
                self.not_full.notify(n)
            return items
