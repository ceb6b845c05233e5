"""Persist one ingest batch in one transaction: transitions, object state, violations, outbox.

Writing the outbox rows in the same transaction as the violation change is what makes delivery
trustworthy: a notification exists if and only if the change it announces was committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from auditd.inventory.inventory import Delta
from auditd.rules.lifecycle import Change
from auditd.store.models import (
    NotificationRow,
    ObjectRow,
    StreamHealthRow,
    TransitionRow,
    ViolationRow,
)


@dataclass(frozen=True)
class PlannedNotification:
    sink: str
    payload: dict[str, Any]


def _upsert(
    session: Session, model: type[Any], keys: list[str], rows: list[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    stmt = ins.on_conflict_do_update(
        index_elements=keys,
        set_={c: ins.excluded[c] for c in rows[0] if c not in keys},
    )
    session.execute(stmt, rows)


def write_stream_health(session: Session, rows: list[dict[str, Any]]) -> None:
    _upsert(session, StreamHealthRow, ["cluster", "kind"], rows)


def write_delta(session: Session, delta: Delta, now: datetime) -> None:
    if delta.transitions:
        session.execute(
            insert(TransitionRow),
            [
                {
                    "cluster": t.key.cluster,
                    "kind": t.key.kind,
                    "namespace": t.key.namespace,
                    "name": t.key.name,
                    "field": t.field,
                    "old": t.old,
                    "new": t.new,
                    "observed_at": t.observed_at,
                    "source": t.source,
                    "late": t.late,
                    "resource_version": t.resource_version,
                }
                for t in delta.transitions
            ],
        )
    _upsert(
        session,
        ObjectRow,
        ["cluster", "kind", "namespace", "name"],
        [
            {
                "cluster": k.cluster,
                "kind": k.kind,
                "namespace": k.namespace,
                "name": k.name,
                "uid": v.uid,
                "resource_version": v.resource_version,
                "facts": v.facts,
                "updated_at": now,
            }
            for k, v in sorted(delta.upserts.items())
        ],
    )
    if delta.deletes:
        keys = [(k.cluster, k.kind, k.namespace, k.name) for k in sorted(delta.deletes)]
        for i in range(0, len(keys), 500):  # stay under bind-parameter limits
            session.execute(
                delete(ObjectRow).where(
                    tuple_(
                        ObjectRow.cluster, ObjectRow.kind, ObjectRow.namespace, ObjectRow.name
                    ).in_(keys[i : i + 500])
                )
            )


def write_change(
    session: Session, change: Change, notifications: list[PlannedNotification], now: datetime
) -> int:
    """Store one violation change and its notifications; returns the violation id."""
    v = change.violation
    if v.id is None:
        row = ViolationRow(
            rule=v.rule,
            subject=v.subject,
            pair=v.pair,
            cluster=v.cluster,
            severity=v.severity,
            state=v.state,
            summary=v.summary,
            evidence=v.evidence,
            first_seen=v.first_seen,
            fired_at=v.fired_at,
            resolved_at=v.resolved_at,
        )
        session.add(row)
        session.flush()
        violation_id = row.id
    else:
        violation_id = v.id
        session.execute(
            update(ViolationRow)
            .where(ViolationRow.id == v.id)
            .values(
                state=v.state,
                severity=v.severity,
                summary=v.summary,
                evidence=v.evidence,
                fired_at=v.fired_at,
                resolved_at=v.resolved_at,
            )
        )
    for n in notifications:
        session.add(
            NotificationRow(
                violation_id=violation_id,
                event=v.state,
                sink=n.sink,
                payload=n.payload,
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return violation_id
