"""The notification pipeline, as in Alertmanager: route (silence -> inhibit -> group), then
flush incidents into messages, then deliver with retries and a dead letter.

Every stage keeps its state in the database (alert rows, incidents, message rows), so a
restart changes nothing. Sending happens outside any database transaction (an HTTP call must
never hold the SQLite write lock); each result is then recorded in its own short transaction.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.grouping import (
    Member,
    Timing,
    decide,
    diff,
    group_key,
    group_labels,
    snapshot,
)
from auditd.alerts.inhibit import PARENT_RULES, Parent, inhibited_by
from auditd.alerts.render import delivered_late
from auditd.alerts.render_group import render_group
from auditd.alerts.silences import Silence, silenced_by
from auditd.alerts.sinks.base import RefreshingSink, SendResult, Sink
from auditd.clock import SYSTEM, Clock
from auditd.config import AlertsConfig
from auditd.logs import Spell, describe
from auditd.store.models import AlertGroupRow, NotificationRow, ViolationRow
from auditd.store.silence_store import list_silences

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sinks: dict[str, Sink],
        settings: AlertsConfig,
        clock: Clock = SYSTEM,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        # Only the leader delivers (replicas on one PostgreSQL history, daemon/leader.py).
        self.leading = leading
        self.sinks = sinks
        self.settings = settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._warned_missing: set[str] = set()
        # Sinks failing transiently: since when, and when their oldest message was last tried.
        self._down: dict[str, datetime] = {}
        self._rechecked: dict[str, datetime] = {}
        self._refreshed: dict[str, datetime] = {}  # sink -> last re-send of firing alerts
        self.timing = Timing(settings.group_wait, settings.group_interval, settings.repeat_interval)

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
            except Exception as e:  # a bug must not end delivery for good
                if not spell.bad:
                    log.exception("outbox pass failed")
                spell.failed(describe(e), time.monotonic(), logging.ERROR)
            else:
                spell.succeeded(time.monotonic())
            self._wake.wait(1.0)
            self._wake.clear()

    def drain_once(self, now: datetime | None = None, deadline: float | None = None) -> int:
        """One pass of the pipeline: route (silence, inhibit, group), flush incidents, deliver.
        Returns how many messages were sent.

        Without a deadline the pass ends early when the dispatcher is stopping; with one
        (the final flush at shutdown) it ends at the deadline (``time.monotonic()``).
        """
        now = now or self.clock.now()
        alone = self._route(now)
        self._flush(now)
        sent = self._deliver(now, alone, deadline)
        self._refresh(now)
        return sent

    def _refresh(self, now: datetime) -> None:
        """Sinks that forget an alert unless told again (Alertmanager, after its
        resolve_timeout) get every alert still firing, every ``resend_every``: the latest
        firing message each violation delivered to them."""
        for name, sink in self.sinks.items():
            if not isinstance(sink, RefreshingSink):
                continue
            last = self._refreshed.get(name)
            if last is not None and now - last < sink.resend_every:
                continue
            self._refreshed[name] = now
            n = NotificationRow
            with self.sessions() as session:
                latest = (
                    select(func.max(n.id))
                    .join(ViolationRow, ViolationRow.id == n.violation_id)
                    .where(
                        n.sink == name,
                        n.status == "sent",
                        ViolationRow.state == "firing",
                        ViolationRow.resolved_at.is_(None),
                    )
                    .group_by(n.violation_id)
                )
                payloads = [
                    payload
                    for payload, event in session.execute(
                        select(n.payload, n.event).where(n.id.in_(latest)).order_by(n.id)
                    )
                    if event == "firing"
                ]
            if not payloads:
                continue
            result = sink.post([sink.alert(p, now) for p in payloads])
            if not result.ok:
                log.warning(
                    "re-sending %d firing alert(s) to %s failed: %s",
                    len(payloads),
                    name,
                    result.error,
                )

    def _route(self, now: datetime) -> set[int]:
        """Silence, inhibit and group the new alerts, in one transaction.

        Returns the ids of alerts of grouping sinks that still go out on their own: the resolve
        of an alert that was itself sent on its own (before grouping existed)."""
        alone: set[int] = set()
        with self.sessions.begin() as session:
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
            self._release(session, parents, silences, now)
            rows = session.scalars(
                select(NotificationRow)
                .where(
                    NotificationRow.status == "pending", NotificationRow.violation_id.is_not(None)
                )
                .order_by(NotificationRow.id)
                .limit(5000)
            ).all()
            if not rows:
                return alone
            # Lanes whose "firing" was held back (silenced or inhibited): their "resolved" is
            # held back the same way, since nobody was told it fired.
            quiet: dict[tuple[int | None, str], str] = {
                (vid, sink): status
                for vid, sink, status in session.execute(
                    select(
                        NotificationRow.violation_id, NotificationRow.sink, NotificationRow.status
                    ).where(
                        NotificationRow.status.in_(("silenced", "inhibited")),
                        NotificationRow.violation_id.in_({r.violation_id for r in rows}),
                    )
                )
            }
            for row in rows:
                lane = (row.violation_id, row.sink)
                labels = row.payload.get("labels") or {}
                if row.event == "resolved" and lane in quiet:
                    self._hold(row, quiet[lane], "its firing notification was held back")
                    continue
                silence = silenced_by(silences, labels, now)
                if silence is not None:
                    reason = f"silenced by {silence.id} ({silence.author}: {silence.comment})"
                    self._hold(row, "silenced", reason)
                    quiet[lane] = "silenced"
                    continue
                parent = inhibited_by(parents, labels) if row.event == "firing" else None
                if parent is not None:
                    self._hold(row, "inhibited", f"inhibited by {parent.rule} {parent.subject}")
                    quiet[lane] = "inhibited"
                    continue
                sink = self.sinks.get(row.sink)
                if sink is None or not sink.grouped:
                    continue
                group = self._group_for(session, row, now)
                if group is None:
                    alone.add(row.id)
                    continue
                row.group_id, row.status = group.id, "grouped"
        return alone

    def _release(
        self, session: Session, parents: list[Parent], silences: list[Silence], now: datetime
    ) -> None:
        """Held-back firings whose reason is gone (the inhibiting alert resolved, the silence
        expired) while their violation still fires go back to pending: as in Alertmanager,
        inhibition and silences are decided when a message is due, so an alert held back is
        announced once nothing holds it. Without this, a violation found while its cluster was
        blind would fire forever unannounced."""
        held = session.scalars(
            select(NotificationRow)
            .join(ViolationRow, ViolationRow.id == NotificationRow.violation_id)
            .where(
                NotificationRow.status.in_(("inhibited", "silenced")),
                NotificationRow.event == "firing",
                ViolationRow.state == "firing",
                ViolationRow.resolved_at.is_(None),
            )
            .order_by(NotificationRow.id)
        ).all()
        for row in held:
            labels = row.payload.get("labels") or {}
            if silenced_by(silences, labels, now) is None and inhibited_by(parents, labels) is None:
                log.info(
                    "notification %d released: it was %s, nothing holds it now", row.id, row.status
                )
                row.status, row.last_error, row.next_attempt_at = "pending", None, now

    def _group_for(
        self, session: Session, row: NotificationRow, now: datetime
    ) -> AlertGroupRow | None:
        """The open incident this alert belongs to: the one its violation is already in (a
        resolve, an escalation), else the one its labels pick, opened if need be."""
        current = session.scalar(
            select(AlertGroupRow)
            .join(NotificationRow, NotificationRow.group_id == AlertGroupRow.id)
            .where(
                NotificationRow.violation_id == row.violation_id,
                NotificationRow.sink == row.sink,
                AlertGroupRow.closed_at.is_(None),
            )
            .limit(1)
        )
        if current is not None or row.event != "firing":
            return current
        labels = row.payload.get("labels") or {}
        key = group_key(labels, self.settings.group_by)
        group = session.scalar(
            select(AlertGroupRow).where(
                AlertGroupRow.sink == row.sink,
                AlertGroupRow.group_key == key,
                AlertGroupRow.closed_at.is_(None),
            )
        )
        if group is None:
            group = AlertGroupRow(
                sink=row.sink,
                group_key=key,
                labels=group_labels(labels, self.settings.group_by),
                # group_wait counts from the first alert, not from when a pass got to it.
                opened_at=min(row.created_at, now),
                announced={"members": {}, "through": 0},
            )
            session.add(group)
            session.flush()
        return group

    def _flush(self, now: datetime) -> None:
        """Each open incident that owes its channel a message gets one, as an outbox row."""
        with self.sessions.begin() as session:
            for group in session.scalars(
                select(AlertGroupRow).where(AlertGroupRow.closed_at.is_(None))
            ).all():
                newest = session.scalar(
                    select(func.max(NotificationRow.id)).where(
                        NotificationRow.group_id == group.id,
                        NotificationRow.violation_id.is_not(None),
                    )
                )
                announced = group.announced.get("members", {})
                if (
                    group.last_flush_at is not None
                    and (newest or 0) <= group.announced.get("through", 0)
                    and now < group.last_flush_at + self.timing.repeat_interval
                ):
                    continue  # nothing new and no reminder due: skip loading its members
                members = self._members(session, group.id)
                event = decide(
                    group.opened_at, group.last_flush_at, announced, members, now, self.timing
                )
                if event is None:
                    continue
                if event == "drop":
                    group.closed_at = now
                    log.info("incident %d resolved before it was announced", group.id)
                    continue
                try:
                    payload = render_group(
                        event, group.labels, members, diff(announced, members), group.opened_at, now
                    )
                except Exception:  # one odd incident must not hold back every other one
                    log.exception("cannot render incident %d; will retry", group.id)
                    continue
                session.add(
                    NotificationRow(
                        violation_id=None,
                        group_id=group.id,
                        event=event,
                        sink=group.sink,
                        payload=payload,
                        status="pending",
                        attempts=0,
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
                group.announced = {"members": snapshot(members), "through": newest or 0}
                group.last_flush_at = now
                if event == "resolved":
                    group.closed_at = now

    @staticmethod
    def _members(session: Session, group_id: int) -> list[Member]:
        latest: dict[int, Member] = {}
        for vid, event, payload in session.execute(
            select(NotificationRow.violation_id, NotificationRow.event, NotificationRow.payload)
            .where(NotificationRow.group_id == group_id, NotificationRow.violation_id.is_not(None))
            .order_by(NotificationRow.id)
        ):
            assert vid is not None
            latest[vid] = Member(vid, event, str(payload.get("severity")), payload)
        return list(latest.values())

    def _deliver(self, now: datetime, alone: set[int], deadline: float | None) -> int:
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
                .limit(500)
            ).all()
            rechecks = self._rechecks(session, now)
            rows = [*rows, *(r for r in rechecks if r.id not in {x.id for x in rows})]
            self._warn_unconfigured(session)
            # One incident's (or alert's) messages go out in order: an update or resolve never
            # overtakes the message it replies to, even while that one waits for its retry.
            blocked: set[tuple[int | None, int | None, str]] = {
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
        sent = 0
        for row in rows:
            lane = (row.violation_id, row.group_id, row.sink)
            sink = self.sinks.get(row.sink)
            if (
                row.status == "pending"
                and row.violation_id is not None
                and sink is not None
                and sink.grouped
                and row.id not in alone
            ):
                continue  # its incident's messages tell it (next pass routes it)
            if (lane in blocked and row not in rechecks) or sink is None:
                continue
            key = f"auditd-notification-{row.id}"
            if row.status == "sending":
                parent = self._parent(row)
                already = sink.find_sent(key, parent)
                if already is not None:
                    sink.completed(row.payload, parent)
                    log.info(
                        "notification %d was delivered before a restart; not sending again", row.id
                    )
                    # The attempt that a crash interrupted did reach the sink: it counts.
                    self._record(
                        row.id, SendResult(ok=True, external_id=already), row.attempts + 1, now
                    )
                    sent += 1
                    continue
            self._mark_sending(row.id)
            try:
                payload = delivered_late(row.payload, now - row.created_at)
                result = sink.send(payload, key, self._parent(row))
            except Exception as e:  # a payload the sink cannot take: dead-letter it, go on
                log.exception("sink %s failed on notification %d", row.sink, row.id)
                result = SendResult(
                    ok=False, error=f"{row.sink}: {type(e).__name__}", permanent=True
                )
            self._record(row.id, result, row.attempts + 1, now)
            if result.ok:
                sent += 1
            else:
                blocked.add(lane)
            if (deadline is None and self._stop.is_set()) or (
                deadline is not None and time.monotonic() > deadline
            ):
                break
        return sent

    def _rechecks(self, session: Session, now: datetime) -> list[NotificationRow]:
        """For each sink that is down and due a recheck, its oldest waiting message (the head
        of its lane), tried before its backoff ends: the sink's recovery is noticed within
        sink_recheck, not after the longest backoff."""
        out = []
        for sink, last in list(self._rechecked.items()):
            if sink not in self._down or now - last < self.settings.sink_recheck:
                continue
            grouped = self.sinks[sink].grouped if sink in self.sinks else False
            head = session.scalar(
                select(NotificationRow)
                .where(
                    NotificationRow.sink == sink,
                    NotificationRow.status == "pending",
                    NotificationRow.next_attempt_at > now,
                    # an alert of a grouping sink is told by its incident's messages
                    NotificationRow.violation_id.is_(None) if grouped else true(),
                )
                .order_by(NotificationRow.id)
                .limit(1)
            )
            self._rechecked[sink] = now
            if head is None:
                self._down.pop(sink, None)  # nothing waits: nothing to learn
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

    @staticmethod
    def _hold(row: NotificationRow, status: str, reason: str) -> None:
        """Record a notification as silenced or inhibited: kept, never sent."""
        row.status, row.last_error = status, reason
        log.info("notification %d %s: %s", row.id, status, reason)

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
            if result.ok:
                row.status, row.sent_at, row.external_id = "sent", now, result.external_id
                row.last_error = None
                log.info("notification %d sent via %s", row_id, row.sink)
                down_since = self._down.pop(row.sink, None)
                if down_since is not None:
                    # The sink answers again: what waits for its backoff goes now, in order.
                    result_ = session.execute(
                        update(NotificationRow)
                        .where(
                            NotificationRow.sink == row.sink,
                            NotificationRow.status == "pending",
                            NotificationRow.next_attempt_at > now,
                        )
                        .values(next_attempt_at=now)
                    )
                    released = cast(CursorResult[Any], result_).rowcount
                    log.warning(
                        "sink %s answers again after %s: %d waiting notification(s) released",
                        row.sink,
                        now - down_since,
                        released,
                    )
                return
            row.last_error = result.error
            row.status = "pending"
            cap = self.settings.max_attempts
            too_old = now - row.created_at >= self.settings.give_up_after
            if result.permanent or too_old or (cap is not None and attempts >= cap):
                row.status = "dead"
                log.error(
                    "notification %d to %s dead-lettered after %d attempt(s): %s",
                    row_id,
                    row.sink,
                    attempts,
                    result.error,
                )
                return
            self._down.setdefault(row.sink, now)
            self._rechecked[row.sink] = now
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
