"""The deliver stage: each due message to its sink, in order per lane, outside any database
transaction (an HTTP call must never hold the SQLite write lock), each result recorded in its
own short transaction; the retry policy is the Retrier's."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.message import delivered, read
from auditd.alerts.notify.retrier import Retrier
from auditd.alerts.notify.stage import Pass
from auditd.alerts.sinks.base import SendResult, Sink
from auditd.store.models import NotificationRow

log = logging.getLogger(__name__)

# Messages fetched per pass: what waits beyond is next pass's.
BATCH = 500

Lane = tuple[int | None, int | None, str]  # (violation, incident, sink): delivered in order


class Deliver:
    def __init__(
        self, sessions: sessionmaker[Session], sinks: Mapping[str, Sink], retrier: Retrier
    ) -> None:
        self.sessions = sessions
        self.sinks = sinks
        self.retrier = retrier
        self._warned_missing: set[str] = set()

    def run(self, p: Pass) -> None:
        now = p.now
        with self.sessions() as session:
            rows = session.scalars(
                select(NotificationRow)
                .where(
                    # "sending" rows are what a crash left mid-delivery: checked before any
                    # resend. Rows waiting for a retry, or for a sink that is not configured,
                    # are not fetched: a backlog on one broken sink cannot crowd out the rest.
                    or_(
                        NotificationRow.status == "sending",
                        and_(
                            NotificationRow.status == "pending",
                            NotificationRow.next_attempt_at <= now,
                        ),
                    ),
                    NotificationRow.sink.in_(list(self.sinks)),
                )
                .order_by(NotificationRow.id)
                .limit(BATCH)
            ).all()
            rechecks = self._rechecks(session, now)
            rows = [*rows, *(r for r in rechecks if r.id not in {x.id for x in rows})]
            self._warn_unconfigured(session)
            # One incident's (or alert's) messages go out in order: an update or resolve never
            # overtakes the message it replies to, even while that one waits for its retry.
            blocked: set[Lane] = {
                (vid, gid, sink)
                for vid, gid, sink in session.execute(
                    select(
                        NotificationRow.violation_id, NotificationRow.group_id, NotificationRow.sink
                    )
                    .where(
                        NotificationRow.status == "pending", NotificationRow.next_attempt_at > now
                    )
                    .distinct()
                )
            }
        for row in rows:
            lane = (row.violation_id, row.group_id, row.sink)
            sink = self.sinks.get(row.sink)
            if (
                row.status == "pending"
                and row.violation_id is not None
                and sink is not None
                and sink.grouped
                and row.id not in p.alone
            ):
                continue  # its incident's messages tell it (next pass routes it)
            if (lane in blocked and row not in rechecks) or sink is None:
                continue
            if self._one(row, sink, now):
                p.sent += 1
            else:
                blocked.add(lane)
            if p.out_of_time():
                break

    def _one(self, row: NotificationRow, sink: Sink, now: datetime) -> bool:
        """Deliver one message (or find that a crash already did); True if it reached the sink."""
        key = f"auditd-notification-{row.id}"
        parent = self._parent(row)
        try:
            message = read(row.payload, incident=row.violation_id is None)
        except (ValueError, TypeError) as e:  # a row no version of auditd could have written
            log.error("notification %d is unreadable (%s); dead-lettered", row.id, e)
            error = f"unreadable notification: {type(e).__name__}"
            self._record(row.id, SendResult(ok=False, error=error, permanent=True), 1, now)
            return False
        if row.status == "sending":
            already = sink.find_sent(key, parent)
            if already is not None:
                sink.completed(message, parent)
                log.info(
                    "notification %d was delivered before a restart; not sending again", row.id
                )
                # The attempt that a crash interrupted did reach the sink: it counts.
                self._record(
                    row.id, SendResult(ok=True, external_id=already), row.attempts + 1, now
                )
                return True
        self._mark_sending(row.id)
        try:
            result = sink.send(delivered(message, now - row.created_at), key, parent)
        except Exception as e:  # a payload the sink cannot take: dead-letter it, go on
            log.exception("sink %s failed on notification %d", row.sink, row.id)
            result = SendResult(ok=False, error=f"{row.sink}: {type(e).__name__}", permanent=True)
        self._record(row.id, result, row.attempts + 1, now)
        return result.ok

    def _rechecks(self, session: Session, now: datetime) -> list[NotificationRow]:
        """For each sink that is down and due a recheck, its oldest waiting message (the head
        of its lane), tried before its backoff ends."""
        out = []
        for name in self.retrier.due_rechecks(now):
            sink = self.sinks.get(name)
            grouped = sink.grouped if sink is not None else False
            head = session.scalar(
                select(NotificationRow)
                .where(
                    NotificationRow.sink == name,
                    NotificationRow.status == "pending",
                    NotificationRow.next_attempt_at > now,
                    # an alert of a grouping sink is told by its incident's messages
                    NotificationRow.violation_id.is_(None) if grouped else true(),
                )
                .order_by(NotificationRow.id)
                .limit(1)
            )
            if head is None:
                self.retrier.nothing_waits(name)
            else:
                out.append(head)
        return out

    def _warn_unconfigured(self, session: Session) -> None:
        """Once per sink: notifications wait for a sink this run does not have."""
        waiting = session.scalars(
            select(NotificationRow.sink)
            .where(
                NotificationRow.status == "pending",
                NotificationRow.sink.not_in(list(self.sinks) + list(self._warned_missing)),
            )
            .distinct()
        ).all()
        for name in waiting:
            log.warning("sink %r is not configured; its notifications wait", name)
            self._warned_missing.add(name)

    def _parent(self, row: NotificationRow) -> str | None:
        """The external id (Slack ts) of the incident's first delivered message, if any."""
        if row.event == "firing":
            return None
        same = (
            NotificationRow.group_id == row.group_id
            if row.violation_id is None
            else NotificationRow.violation_id == row.violation_id
        )
        with self.sessions() as session:
            return session.scalar(
                select(NotificationRow.external_id)
                .where(
                    same,
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

    def _record(self, row_id: int, result: SendResult, attempts: int, now: datetime) -> None:
        # The pass's time, from the injected clock: a retry is scheduled on the same timeline
        # the pass reads due rows from.
        with self.sessions.begin() as session:
            row = session.get(NotificationRow, row_id)
            if row is None:
                return
            row.attempts = attempts
            verdict = self.retrier.judge(row.sink, result, attempts, row.created_at, now)
            if verdict.status == "sent":
                row.status, row.sent_at, row.external_id = "sent", now, result.external_id
                row.last_error = None
                log.info("notification %d sent via %s", row_id, row.sink)
                if verdict.back_after is not None:
                    # The sink answers again: what waits for its backoff goes now, in order.
                    released = session.execute(
                        update(NotificationRow)
                        .where(
                            NotificationRow.sink == row.sink,
                            NotificationRow.status == "pending",
                            NotificationRow.next_attempt_at > now,
                        )
                        .values(next_attempt_at=now)
                    )
                    log.warning(
                        "sink %s answers again after %s: %d waiting notification(s) released",
                        row.sink,
                        verdict.back_after,
                        cast(CursorResult[Any], released).rowcount,
                    )
                return
            row.last_error, row.status = result.error, verdict.status
            if verdict.status == "dead":
                log.error(
                    "notification %d to %s dead-lettered after %d attempt(s): %s",
                    row_id,
                    row.sink,
                    attempts,
                    result.error,
                )
                return
            assert verdict.retry_at is not None  # "pending" always says when
            row.next_attempt_at = verdict.retry_at
            log.warning(
                "notification %d to %s failed (%s); retry %d in %.1fs",
                row_id,
                row.sink,
                result.error,
                attempts,
                (verdict.retry_at - now).total_seconds(),
            )
