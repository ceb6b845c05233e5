"""One retry policy for every sink, as Alertmanager's ``Retrier``: exponential backoff with
jitter (never sooner than a Retry-After), dead-lettering (a permanent error, ``max_attempts``,
or older than ``give_up_after``), and each sink's outage: since when it is down, and when its
oldest waiting message was last tried, so a recovery is noticed within ``sink_recheck`` rather
than after the longest backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from auditd.alerts.sinks.base import SendResult
from auditd.config import AlertsConfig

# Jitter from a generator of its own: the global one belongs to whoever embeds or tests auditd.
_JITTER = random.Random()


@dataclass(frozen=True)
class Verdict:
    """What becomes of a notification after one attempt."""

    status: str  # "sent", "dead" or "pending" (a retry at ``retry_at``)
    retry_at: datetime | None = None
    # Set on a success that ends an outage: how long the sink was down (its backlog goes now).
    back_after: timedelta | None = None


class Retrier:
    def __init__(self, settings: AlertsConfig) -> None:
        self.settings = settings
        self._down: dict[str, datetime] = {}  # sink -> failing since
        self._rechecked: dict[str, datetime] = {}  # sink -> its lane's head last tried

    def judge(
        self, sink: str, result: SendResult, attempts: int, created_at: datetime, now: datetime
    ) -> Verdict:
        if result.ok:
            down_since = self._down.pop(sink, None)
            return Verdict("sent", back_after=None if down_since is None else now - down_since)
        cap = self.settings.max_attempts
        too_old = now - created_at >= self.settings.give_up_after
        if result.permanent or too_old or (cap is not None and attempts >= cap):
            return Verdict("dead")
        self._down.setdefault(sink, now)
        self._rechecked[sink] = now
        return Verdict("pending", retry_at=now + timedelta(seconds=self.delay(attempts, result)))

    def delay(self, attempts: int, result: SendResult) -> float:
        base = self.settings.retry_initial.total_seconds() * (2.0 ** (attempts - 1))
        delay = min(self.settings.retry_max.total_seconds(), base) * _JITTER.uniform(0.8, 1.2)
        return max(delay, result.retry_after or 0.0)

    def due_rechecks(self, now: datetime) -> list[str]:
        """The sinks that are down and due a try of their oldest waiting message."""
        due = [
            sink
            for sink, last in self._rechecked.items()
            if sink in self._down and now - last >= self.settings.sink_recheck
        ]
        for sink in due:
            self._rechecked[sink] = now
        return due

    def nothing_waits(self, sink: str) -> None:
        """A down sink with no message waiting: nothing can tell it recovered, nor needs to."""
        self._down.pop(sink, None)
