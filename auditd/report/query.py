"""Read a window of history for the report. Filtering and ordering happen in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from auditd.store.models import NotificationRow, TransitionRow, ViolationRow


@dataclass(frozen=True)
class ReportData:
    since: datetime
    until: datetime
    transitions: list[dict[str, Any]]
    violations: list[dict[str, Any]]


def iso_utc(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def load_report(session: Session, since: datetime, until: datetime) -> ReportData:
    transitions = [
        {
            "observed_at": iso_utc(r.observed_at),
            "cluster": r.cluster,
            "kind": r.kind,
            "namespace": r.namespace,
            "name": r.name,
            "field": r.field,
            "old": r.old,
            "new": r.new,
            "source": r.source,
            "late": r.late,
        }
        for r in session.scalars(
            select(TransitionRow)
            .where(TransitionRow.observed_at >= since, TransitionRow.observed_at < until)
            .order_by(TransitionRow.observed_at, TransitionRow.id)
        )
    ]
    # A violation belongs in the window if any part of its life overlaps it.
    vrows = session.scalars(
        select(ViolationRow)
        .where(
            ViolationRow.first_seen < until,
            or_(ViolationRow.resolved_at.is_(None), ViolationRow.resolved_at >= since),
            ViolationRow.state != "inactive",
        )
        .order_by(ViolationRow.first_seen, ViolationRow.id)
    ).all()
    delivery: dict[int, list[str]] = {}
    if vrows:
        alerts = session.scalars(
            select(NotificationRow)
            .where(NotificationRow.violation_id.in_([v.id for v in vrows]))
            .order_by(NotificationRow.id)
        ).all()
        # A grouped alert was told by the first message of its incident written after it.
        messages: dict[int, list[tuple[int, str]]] = {}
        groups = {n.group_id for n in alerts if n.group_id is not None}
        if groups:
            for mid, gid, status in session.execute(
                select(NotificationRow.id, NotificationRow.group_id, NotificationRow.status)
                .where(NotificationRow.group_id.in_(groups), NotificationRow.violation_id.is_(None))
                .order_by(NotificationRow.id)
            ):
                if gid is not None:
                    messages.setdefault(gid, []).append((mid, status))
        for n in alerts:
            status = n.status
            if n.group_id is not None:
                status = next(
                    (st for mid, st in messages.get(n.group_id, []) if mid > n.id), status
                )
            assert n.violation_id is not None
            delivery.setdefault(n.violation_id, []).append(f"{n.event}:{n.sink}:{status}")
    violations = [
        {
            "id": v.id,
            "rule": v.rule,
            "subject": v.subject,
            "pair": v.pair,
            "cluster": v.cluster,
            "severity": v.severity,
            "state": v.state,
            "summary": v.summary,
            "first_seen": iso_utc(v.first_seen),
            "fired_at": iso_utc(v.fired_at),
            "resolved_at": iso_utc(v.resolved_at),
            "evidence": v.evidence,
            "notifications": delivery.get(v.id, []),
        }
        for v in vrows
    ]
    return ReportData(since, until, transitions, violations)
