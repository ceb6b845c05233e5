"""The refresh stage: sinks that forget a firing alert unless told again (Alertmanager resolves
an alert after its resolve_timeout) get every alert still firing, every ``refresher.every``:
the latest firing message each violation delivered to them. A sink says so by having a
``refresher``; the others have none."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.message import Alert
from auditd.alerts.notify.stage import Pass
from auditd.alerts.sinks.base import Sink
from auditd.store.models import NotificationRow, ViolationRow

log = logging.getLogger(__name__)


class Refresh:
    def __init__(self, sessions: sessionmaker[Session], sinks: Mapping[str, Sink]) -> None:
        self.sessions = sessions
        self.sinks = sinks
        self._refreshed: dict[str, datetime] = {}  # sink -> its last re-send

    def run(self, p: Pass) -> None:
        for name, sink in self.sinks.items():
            refresher = sink.refresher
            if refresher is None:
                continue
            last = self._refreshed.get(name)
            if last is not None and p.now - last < refresher.every:
                continue
            self._refreshed[name] = p.now
            alerts = self._still_firing(name)
            if not alerts:
                continue
            result = refresher.resend(alerts, p.now)
            if not result.ok:
                log.warning(
                    "re-sending %d firing alert(s) to %s failed: %s",
                    len(alerts),
                    name,
                    result.error,
                )

    def _still_firing(self, sink: str) -> list[Alert]:
        n = NotificationRow
        with self.sessions() as session:
            latest = (
                select(func.max(n.id))
                .join(ViolationRow, ViolationRow.id == n.violation_id)
                .where(
                    n.sink == sink,
                    n.status == "sent",
                    ViolationRow.state == "firing",
                    ViolationRow.resolved_at.is_(None),
                )
                .group_by(n.violation_id)
            )
            return [
                Alert.from_json(payload)
                for payload, event in session.execute(
                    select(n.payload, n.event).where(n.id.in_(latest)).order_by(n.id)
                )
                if event == "firing"
            ]
