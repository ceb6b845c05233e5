"""Deliver the outbox: pending notifications go to their sink, with retries and a dead letter.

Sending happens outside any database transaction (an HTTP call must never hold the SQLite write
lock); each result is then recorded in its own short transaction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.inhibit import PARENT_RULES, Parent, inhibited_by
from auditd.alerts.silences import silenced_by
from auditd.alerts.sinks.base import SendResult, Sink
from auditd.config import AlertsConfig
from auditd.store.models import NotificationRow, ViolationRow
from auditd.store.silence_store import list_silences

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], sinks: dict[str, Sink], settings: AlertsConfig
    ) -> None:
        self.sessions = sessions
        self.sinks = sinks
        self.settings = settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._warned_missing: set[str] = set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox pass failed; will retry")
            self._wake.wait(1.0)
            self._wake.clear()

    def drain_once(self, now: datetime | None = None, deadline: float | None = None) -> int:
        """One pass over the due notifications, oldest first. Returns how many were sent.

        Without a deadline the pass ends early when the dispatcher is stopping; with one
        (the final flush at shutdown) it ends at the deadline (``time.monotonic()``).
        """
        now = now or datetime.now(UTC)
        with self.sessions() as session:
            rows = session.scalars(
                select(NotificationRow)
                # "sending" rows are what a crash left mid-delivery: checked before any resend.
                .where(NotificationRow.status.in_(("pending", "sending")))
                .order_by(NotificationRow.id)
                .limit(500)
            ).all()
            silences = list_silences(session, now)
            parents = [
                Parent(v.rule, v.subject, v.cluster, v.pair)
                for v in session.scalars(
                    select(ViolationRow).where(
                        ViolationRow.rule.in_(PARENT_RULES),
                        ViolationRow.state == "firing",
                        ViolationRow.resolved_at.is_(None),
                    )
                )
            ]
            # Lanes whose "firing" was silenced: their "resolved" is silenced too.
            quiet: set[tuple[int, str]] = set()
            if rows:
                for vid, sink_name in session.execute(
                    select(NotificationRow.violation_id, NotificationRow.sink).where(
                        NotificationRow.status.in_(("silenced", "inhibited")),
                        NotificationRow.violation_id.in_({r.violation_id for r in rows}),
                    )
                ):
                    quiet.add((vid, sink_name))
        sent = 0
        # A violation's notifications go out in order: "resolved" never overtakes its "firing".
        blocked: set[tuple[int, str]] = set()
        for row in rows:
            lane = (row.violation_id, row.sink)
            if lane in blocked:
                continue
            labels = row.payload.get("labels") or {}
            if row.event == "resolved" and lane in quiet:
                self._hold(row.id, "silenced", "its firing notification was held back")
                continue
            silence = silenced_by(silences, labels, now)
            if silence is not None:
                reason = f"silenced by {silence.id} ({silence.author}: {silence.comment})"
                self._hold(row.id, "silenced", reason)
                quiet.add(lane)
                continue
            parent = inhibited_by(parents, labels) if row.event == "firing" else None
            if parent is not None:
                self._hold(row.id, "inhibited", f"inhibited by {parent.rule} {parent.subject}")
                quiet.add(lane)
                continue
            if row.next_attempt_at > now:
                blocked.add(lane)
                continue
            sink = self.sinks.get(row.sink)
            if sink is None:
                if row.sink not in self._warned_missing:
                    log.warning("sink %r is not configured; its notifications wait", row.sink)
                    self._warned_missing.add(row.sink)
                blocked.add(lane)
                continue
            key = f"auditd-notification-{row.id}"
            if row.status == "sending":
                already = sink.find_sent(key)
                if already is not None:
                    log.info(
                        "notification %d was delivered before a restart; not sending again", row.id
                    )
                    self._record(row.id, SendResult(ok=True, external_id=already), row.attempts)
                    sent += 1
                    continue
            self._mark_sending(row.id)
            result = sink.send(row.payload, key, self._parent(row))
            self._record(row.id, result, row.attempts + 1)
            if result.ok:
                sent += 1
            else:
                blocked.add(lane)
            if (deadline is None and self._stop.is_set()) or (
                deadline is not None and time.monotonic() > deadline
            ):
                break
        return sent

    def _hold(self, row_id: int, status: str, reason: str) -> None:
        """Record a notification as silenced or inhibited: kept, never sent."""
        with self.sessions.begin() as session:
            row = session.get(NotificationRow, row_id)
            if row is not None:
                row.status, row.last_error = status, reason
        log.info("notification %d %s: %s", row_id, status, reason)

    def _parent(self, row: NotificationRow) -> str | None:
        """The external id (Slack ts) of this incident's first delivered message, if any."""
        if row.event == "firing":
            return None
        with self.sessions() as session:
            return session.scalar(
                select(NotificationRow.external_id)
                .where(
                    NotificationRow.violation_id == row.violation_id,
                    NotificationRow.sink == row.sink,
                    NotificationRow.status == "sent",
                    NotificationRow.id < row.id,
                )
                .order_by(NotificationRow.id)
                .limit(1)
            )

    def _mark_sending(self, row_id: int) -> None:
        # Committed before the HTTP call: if we die after Slack accepted the message but before
        # _record commits, the next start finds this row "sending" and asks Slack first.
        with self.sessions.begin() as session:
            row = session.get(NotificationRow, row_id)
            if row is not None:
                row.status = "sending"

    def _record(self, row_id: int, result: SendResult, attempts: int) -> None:
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            row = session.get(NotificationRow, row_id)
            if row is None:
                return
            row.attempts = attempts
            if result.ok:
                row.status, row.sent_at, row.external_id = "sent", now, result.external_id
                row.last_error = None
                log.info("notification %d sent via %s", row_id, row.sink)
                return
            row.last_error = result.error
            row.status = "pending"
            if result.permanent or attempts >= self.settings.max_attempts:
                row.status = "dead"
                log.error(
                    "notification %d to %s dead-lettered after %d attempt(s): %s",
                    row_id,
                    row.sink,
                    attempts,
                    result.error,
                )
                return
            delay = self._retry_delay(attempts, result.retry_after)
            row.next_attempt_at = now + timedelta(seconds=delay)
            log.warning(
                "notification %d to %s failed (%s); retry %d in %.1fs",
                row_id,
                row.sink,
                result.error,
                attempts,
                delay,
            )

    def _retry_delay(self, attempts: int, retry_after: float | None) -> float:
        base = self.settings.retry_initial.total_seconds() * (2.0 ** (attempts - 1))
        delay = min(self.settings.retry_max.total_seconds(), base) * random.uniform(0.8, 1.2)
        return max(delay, retry_after or 0.0)
