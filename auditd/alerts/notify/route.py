"""The route stage: release what nothing holds any more, then silence, inhibit and group the
new alerts, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.grouping import group_key, group_labels
from auditd.alerts.message import stored_labels
from auditd.alerts.notify.muter import Muter
from auditd.alerts.notify.stage import Pass
from auditd.alerts.sinks.base import Sink
from auditd.config import AlertsConfig
from auditd.store.models import AlertGroupRow, NotificationRow, ViolationRow

log = logging.getLogger(__name__)

# New alerts routed per pass: a storm is routed over a few passes, never in one huge transaction.
BATCH = 5000


class Route:
    def __init__(
        self, sessions: sessionmaker[Session], sinks: Mapping[str, Sink], settings: AlertsConfig
    ) -> None:
        self.sessions = sessions
        self.sinks = sinks
        self.settings = settings
        self.inhibit_rules = tuple(r.rule() for r in settings.inhibit_rules)

    def run(self, p: Pass) -> None:
        """Fills ``p.alone``: alerts of grouping sinks that still go out on their own (the
        resolve of an alert that was itself sent on its own, before grouping existed)."""
        with self.sessions.begin() as session:
            muter = Muter.load(session, p.now, self.inhibit_rules)
            self._release(session, muter)
            rows = session.scalars(
                select(NotificationRow)
                .where(
                    NotificationRow.status == "pending", NotificationRow.violation_id.is_not(None)
                )
                .order_by(NotificationRow.id)
                .limit(BATCH)
            ).all()
            if not rows:
                return
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
                if row.event == "resolved" and lane in quiet:
                    _hold(row, quiet[lane], "its firing notification was held back")
                    continue
                muted = muter.mutes(_labels(row), row.event)
                if muted is not None:
                    _hold(row, muted.status, muted.reason)
                    quiet[lane] = muted.status
                    continue
                sink = self.sinks.get(row.sink)
                if sink is None or not sink.grouped:
                    continue
                group = self._group_for(session, row, p.now)
                if group is None:
                    p.alone.add(row.id)
                    continue
                row.group_id, row.status = group.id, "grouped"

    @staticmethod
    def _release(session: Session, muter: Muter) -> None:
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
            if muter.mutes(_labels(row), "firing") is None:
                log.info(
                    "notification %d released: it was %s, nothing holds it now", row.id, row.status
                )
                row.status, row.last_error, row.next_attempt_at = "pending", None, muter.now

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
        labels = _labels(row)
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


def _hold(row: NotificationRow, status: str, reason: str) -> None:
    """Record a notification as silenced or inhibited: kept, never sent."""
    row.status, row.last_error = status, reason
    log.info("notification %d %s: %s", row.id, status, reason)


def _labels(row: NotificationRow) -> Mapping[str, str | None]:
    """What a violation's alert is matched and grouped on."""
    return stored_labels(row.payload)
