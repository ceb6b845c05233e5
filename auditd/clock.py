"""The one source of "now". Everything that needs the time is handed a Clock; nothing else in
auditd reads the wall clock (ruff's banned-api enforces it). Tests pass a ManualClock, so a test
pins its own dates and never depends on the day it runs.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock: the daemon's and the CLI's."""

    def now(self) -> datetime:
        return datetime.now(UTC)  # noqa: TID251 - the one allowed read of the wall clock


class ManualClock:
    """A clock that moves only when told to (tests, the demo's simulated hour)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        with self._lock:
            self._now = at

    def advance(self, by: timedelta | float) -> datetime:
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        with self._lock:
            self._now += step
            return self._now


SYSTEM = SystemClock()
