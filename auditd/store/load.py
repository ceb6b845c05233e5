"""Read back what a previous run left: object state and open violations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.inventory.inventory import Known, ObjectKey
from auditd.rules.lifecycle import Active
from auditd.rules.views import VolumeId
from auditd.rules.windows import Episode
from auditd.store.models import EpisodeRow, ObjectRow, ViolationRow


def load_objects(session: Session) -> Iterator[tuple[ObjectKey, Known]]:
    for row in session.scalars(select(ObjectRow)).yield_per(5000):
        yield (
            ObjectKey(row.cluster, row.kind, row.namespace, row.name),
            Known(row.uid, row.resource_version, dict(row.facts)),
        )


def load_open_violations(session: Session) -> dict[tuple[str, str], Active]:
    rows = session.scalars(select(ViolationRow).where(ViolationRow.resolved_at.is_(None))).all()
    return {
        (r.rule, r.subject): Active(
            id=r.id,
            rule=r.rule,
            subject=r.subject,
            state="firing" if r.state == "firing" else "pending",
            severity=r.severity,
            summary=r.summary,
            cluster=r.cluster,
            pair=r.pair,
            evidence=dict(r.evidence),
            first_seen=r.first_seen,
            fired_at=r.fired_at,
        )
        for r in rows
    }


def load_open_episodes(session: Session) -> list[Episode]:
    return [
        Episode(
            volume=VolumeId(r.pair, r.pool, r.image),
            started_at=r.started_at,
            from_cluster=r.from_cluster,
            trigger=r.trigger,
            steps=[(datetime.fromisoformat(t), what) for t, what in r.steps.get("steps", [])],
            id=r.id,
        )
        for r in session.scalars(select(EpisodeRow).where(EpisodeRow.ended_at.is_(None)))
    ]
