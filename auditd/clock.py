"""The one source of "now". Everything that needs the time is handed a Clock; nothing else in
auditd (or its tests) reads the wall clock: ruff's banned-api enforces it. Tests pass a
ManualClock, so a test pins its own dates and never depends on the day it runs.

``AUDITD_CLOCK_SHIFT`` (e.g. ``365d``) moves the system clock of a whole auditd process, and of
the test suite: CI runs the suite a second time a year ahead, so that a test which passes only
on today's date fails at once. (libfaketime cannot do it for Python: a shifted monotonic clock
hangs every timed wait of a thread.)
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auditd import durations


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock (plus a shift, for testing): the daemon's and the CLI's."""

    def __init__(self, shift: timedelta = timedelta(0)) -> None:
        self.shift = shift

    def now(self) -> datetime:
        now = datetime.now(UTC)  # noqa: TID251 - the one read of the wall clock
        return now + self.shift if self.shift else now  # read for every event: no idle sum


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


def shift_from_env(value: str | None) -> timedelta:
    """``AUDITD_CLOCK_SHIFT``: a duration, minus for the past (365d, -90m); unset is none."""
    if not value:
        return timedelta(0)
    try:
        return durations.parse(value, signed=True)
    except ValueError as e:
        raise ValueError(f"AUDITD_CLOCK_SHIFT: {e}") from None


SYSTEM = SystemClock(shift_from_env(os.environ.get("AUDITD_CLOCK_SHIFT")))
