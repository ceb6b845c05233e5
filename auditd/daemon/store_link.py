"""The history database as the ingest writer sees it: one transaction at a time, retried while
the database is down (nothing is dropped: the watchers wait on the bounded queue and resume
exactly), a refusal raised at once (retrying the same values would fail forever), and its own
health (since when it has not taken writes, and why) for /readyz, status and /metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from auditd.clock import Clock
from auditd.logs import Spell, describe
from auditd.store.errors import database_down
from auditd.store.models import StreamHealthRow

if TYPE_CHECKING:
    from auditd.daemon.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Abandoned(Exception):
    """Shutting down while the database stays down: the batch cannot be written."""

    def __init__(self, reason: str, transitions: int) -> None:
        super().__init__(reason)
        self.reason, self.transitions = reason, transitions


class StoreLink:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        metrics: Metrics | None,
        stopping: Callable[[], bool],
        backlog: Callable[[], int],
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.metrics = metrics
        self.stopping = stopping
        self.backlog = backlog  # items held while it is down, for the log line
        self.failing_since: datetime | None = None
        self.error: str | None = None
        self._spell = Spell(log, "history database")

    def run(
        self,
        what: str,
        work: Callable[[Session], T],
        transitions: int = 0,
        commit: bool = False,
        scopes: frozenset[str] | None = None,
    ) -> T:
        """``work`` in one transaction (committed if ``commit``), retried while the database
        is down. ``scopes``: what the leadership fence checks (daemon/leader.py)."""
        attempt = 0
        while True:
            try:
                if commit:
                    with self.sessions.begin() as session:
                        if scopes is not None:
                            session.info["scopes"] = scopes
                        result = work(session)
                else:
                    with self.sessions() as session:
                        result = work(session)
                if self.failing_since is not None:
                    self._ok()
                return result
            except SQLAlchemyError as e:
                if not database_down(e):
                    raise
                attempt += 1
                self.wait(attempt, describe(e), transitions)

    def wait(self, attempt: int, error: str, transitions: int = 0) -> None:
        """One more try at a database that does not take writes: say so, back off (capped,
        exponential), or give up if shutting down after a few tries."""
        self.failing(error)
        if self.stopping() and attempt > 3:
            raise Abandoned(error, transitions)
        time.sleep(min(30.0, 0.25 * 2**attempt))

    def failing(self, error: str) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock.now()
            if self.metrics is not None:
                self.metrics.history_writable.set(0)
        self.error = error
        self._spell.failed(f"{error} (holding {self.backlog()} queued items)", time.monotonic())

    def _ok(self) -> None:
        self.failing_since, self.error = None, None
        self._spell.succeeded(time.monotonic())
        if self.metrics is not None:
            self.metrics.history_writable.set(1)

    def refuses_all_writes(self, scopes: frozenset[str]) -> str | None:
        """A write that touches no row: refused only when the database refuses writes as such.
        None when it is accepted (then the failure was about what the batch held)."""
        row = StreamHealthRow
        try:
            with self.sessions.begin() as session:
                session.info["scopes"] = scopes
                session.execute(
                    update(row).where(row.cluster == "", row.kind == "").values(state="")
                )
            return None
        except SQLAlchemyError as e:
            return describe(e)
