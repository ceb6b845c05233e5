"""Read back what a previous run left: object state, image records, open violations and
windows. ``load_state`` is the one loader of the rule state: the daemon starts from it and
`auditd explain` judges from it, so both see the same facts, records and windows."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.config import Config
from auditd.inventory.inventory import Inventory, Known, ObjectKey
from auditd.inventory.records import ImageRecord, RecordKey
from auditd.rules.engine import RuleEngine
from auditd.rules.lifecycle import Active
from auditd.rules.views import VolumeId
from auditd.rules.windows import Episode
from auditd.store import episode_steps
from auditd.store.models import (
    EpisodeRow,
    ImageRecordRow,
    ObjectRow,
    StreamHealthRow,
    ViolationRow,
)


def load_objects(session: Session) -> Iterator[tuple[ObjectKey, Known]]:
    for row in session.scalars(select(ObjectRow)).yield_per(5000):
        yield (
            ObjectKey(row.cluster, row.kind, row.namespace, row.name),
            Known(row.uid, row.resource_version, dict(row.facts)),
        )


def load_listed(session: Session) -> list[tuple[str, str]]:
    """The (cluster, kind) streams a previous run completed a list of."""
    row = StreamHealthRow
    found = session.execute(select(row.cluster, row.kind).where(row.last_list_at.is_not(None)))
    return [(cluster, kind) for cluster, kind in found]


def load_open_violations(session: Session) -> dict[tuple[str, str], Active]:
    rows = session.scalars(select(ViolationRow).where(ViolationRow.resolved_at.is_(None))).all()
    return {
        (r.rule, r.subject): Active(
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
    out = []
    for r in session.scalars(select(EpisodeRow).where(EpisodeRow.ended_at.is_(None))):
        stored = episode_steps.from_json(r.steps)
        out.append(
            Episode(
                volume=VolumeId(r.pair, r.pool, r.image),
                started_at=r.started_at,
                from_cluster=r.from_cluster,
                trigger=r.trigger,
                steps=stored.steps,
                to_cluster=r.to_cluster,
                promoted_at=stored.promoted_at,
                had_pvc=stored.had_pvc,
                had_vr=stored.had_vr,
            )
        )
    return out


def load_image_records(session: Session) -> dict[RecordKey, ImageRecord]:
    return {
        (r.cluster, r.pool, r.image): ImageRecord(
            r.updated_at, r.primary, r.role_changed_at, r.demoted_at, r.synced_at, r.seen_at
        )
        for r in session.scalars(select(ImageRecordRow))
    }


def load_state(
    session: Session, config: Config
) -> tuple[Inventory, RuleEngine, dict[tuple[str, str], Active]]:
    """The rule state as the last run left it: inventory (facts and image records), the rule
    engine with each volume's last primary and the open DR windows, and open violations."""
    inventory = Inventory()
    inventory.load(load_objects(session), load_listed(session))
    inventory.records.load(load_image_records(session))
    engine = RuleEngine(config)
    engine.index(inventory)
    engine.seed(inventory)
    for episode in load_open_episodes(session):
        engine.windows.resume(episode)
    return inventory, engine, load_open_violations(session)
