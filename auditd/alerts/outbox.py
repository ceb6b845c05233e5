"""The notification pipeline's loop, as Alertmanager's ``notify.MultiStage``: each pass runs
route (one Muter: silence, inhibit; then group) -> flush (incidents into messages) -> deliver
(one Retrier for every sink) -> refresh (sinks that forget), in that order, on one ``Pass``.

Every stage keeps its state in the database (alert rows, incidents, message rows), so a
restart changes nothing. Only the leader delivers (replicas share one PostgreSQL history,
daemon/leader.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.grouping import Timing
from auditd.alerts.notify.deliver import Deliver
from auditd.alerts.notify.flush import Flush
from auditd.alerts.notify.refresh import Refresh
from auditd.alerts.notify.retrier import Retrier
from auditd.alerts.notify.route import Route
from auditd.alerts.notify.stage import Pass, Stage
from auditd.alerts.sinks.base import Sink
from auditd.clock import SYSTEM, Clock
from auditd.config import AlertsConfig
from auditd.logs import Spell, describe
from auditd.store.errors import NotLeader

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sinks: Mapping[str, Sink],
        settings: AlertsConfig,
        clock: Clock = SYSTEM,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._sinks = sinks
        self.clock = clock
        self.leading = leading
        self._wake = threading.Event()
        self._stop = threading.Event()
        timing = Timing(settings.group_wait, settings.group_interval, settings.repeat_interval)
        self.stages: list[Stage] = [
            Route(sessions, sinks, settings),
            Flush(sessions, timing),
            Deliver(sessions, sinks, Retrier(settings)),
            Refresh(sessions, sinks),
        ]

    @property
    def sinks(self) -> Mapping[str, Sink]:
        """Where this dispatcher delivers (fixed for its life: every stage holds the same)."""
        return self._sinks

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        spell = Spell(log, "alert delivery (outbox pass)")
        while not self._stop.is_set():
            if not self.leading():
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.drain_once()
            except SQLAlchemyError as e:  # the database is down: delivery waits, loses nothing
                spell.failed(describe(e), time.monotonic())
            except NotLeader as e:
                # The lead was lost during the pass (an outage took the election session, or
                # another replica took over): its commit was refused and rolled back, and
                # what it was delivering waits in the outbox for whoever leads. Not a bug.
                spell.failed(f"no longer leading: {describe(e)}", time.monotonic(), logging.INFO)
            except Exception as e:  # a bug must not end delivery for good
                if not spell.bad:
                    log.exception("outbox pass failed")
                spell.failed(describe(e), time.monotonic(), logging.ERROR)
            else:
                spell.succeeded(time.monotonic())
            self._wake.wait(1.0)
            self._wake.clear()

    def drain_once(self, now: datetime | None = None, deadline: float | None = None) -> int:
        """One pass of the pipeline. Returns how many messages were sent.

        Without a deadline the pass ends early when the dispatcher is stopping; with one
        (the final flush at shutdown) it ends at the deadline (``time.monotonic()``).
        """
        p = Pass(now or self.clock.now(), deadline, self._stop.is_set)
        for stage in self.stages:
            stage.run(p)
        return p.sent
