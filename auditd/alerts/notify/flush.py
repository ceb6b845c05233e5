"""The flush stage: each open incident that owes its channel a message gets one, as an outbox
row of its own (firing, update, resolved, or a repeat). When is decided by grouping.decide
(pure); what it says by incident.incident (pure, data: each sink words it at delivery)."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.grouping import Member, Timing, decide, diff, snapshot
from auditd.alerts.incident import incident
from auditd.alerts.message import Alert
from auditd.alerts.notify.stage import Pass
from auditd.store.models import AlertGroupRow, NotificationRow

log = logging.getLogger(__name__)


class Flush:
    def __init__(self, sessions: sessionmaker[Session], timing: Timing) -> None:
        self.sessions = sessions
        self.timing = timing

    def run(self, p: Pass) -> None:
        now = p.now
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
                try:
                    members = _members(session, group.id)
                    event = decide(
                        group.opened_at, group.last_flush_at, announced, members, now, self.timing
                    )
                    if event is None or event == "drop":
                        payload = None
                    else:
                        change = diff(announced, members)
                        payload = incident(
                            event, group.labels, members, change, group.opened_at, now
                        ).to_json()
                except Exception:  # one odd incident must not hold back every other one
                    log.exception("cannot describe incident %d; will retry", group.id)
                    continue
                if event is None:
                    continue
                if event == "drop":
                    group.closed_at = now
                    log.info("incident %d resolved before it was announced", group.id)
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


def _members(session: Session, group_id: int) -> list[Member]:
    """Each member violation's latest alert in the incident."""
    latest: dict[int, Member] = {}
    for vid, event, payload in session.execute(
        select(NotificationRow.violation_id, NotificationRow.event, NotificationRow.payload)
        .where(NotificationRow.group_id == group_id, NotificationRow.violation_id.is_not(None))
        .order_by(NotificationRow.id)
    ):
        assert vid is not None
        alert = Alert.from_json(payload)
        latest[vid] = Member(vid, event, alert.severity, alert)
    return list(latest.values())
