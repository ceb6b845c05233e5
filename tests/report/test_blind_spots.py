"""The report's audit blind spots: intervals when auditd could not see, read from the history.

A blindness that began before the window is still one inside it (its state is the last one
before the window); one that ended before the window is not; each kind (watch stream, probe,
quarantined object) is told apart; --cluster narrows. The history here is written directly,
with the state changes auditd records, at fixed instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.inventory.inventory import EXISTS, QUARANTINED
from auditd.inventory.rbd_facts import RBD_POOL
from auditd.report.query import Filters, _blind_spots
from auditd.sources.kube.health import AUDIT_STREAM
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import TransitionRow

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def at(hours: float) -> datetime:
    return SINCE + timedelta(hours=hours)


def change(
    cluster: str, kind: str, name: str, field: str, old: str | None, new: str, when: datetime
) -> TransitionRow:
    ns = "replicapool" if kind == RBD_POOL else ""
    return TransitionRow(
        cluster=cluster,
        kind=kind,
        namespace=ns,
        name=name,
        field=field,
        old=old,
        new=new,
        observed_at=when,
        source="watch",
    )


def history() -> list[TransitionRow]:
    """Fresh rows for each database (an ORM row belongs to the session that wrote it)."""
    return [
        # dr1's PVC watch: blind from 2 h before the window to 3 h into it.
        change("dr1", AUDIT_STREAM, "persistentvolumeclaims", "state", "ok", "blind", at(-2)),
        change("dr1", AUDIT_STREAM, "persistentvolumeclaims", "state", "blind", "ok", at(3)),
        # dr1's PV watch: blind and back before the window: not in it.
        change("dr1", AUDIT_STREAM, "persistentvolumes", "state", "ok", "blind", at(-5)),
        change("dr1", AUDIT_STREAM, "persistentvolumes", "state", "blind", "ok", at(-4)),
        # dr2's probe: failing from hour 10, never back.
        change("dr2", RBD_POOL, "replicapool", "probe", "ok", "failing", at(10)),
        # A CRD not installed is nothing to see: not blind.
        change("dr2", AUDIT_STREAM, "volumereplications", "state", "ok", "absent", at(1)),
        # A restart's first list: verdicts waited, nothing was missed. Not blind either.
        change("dr2", AUDIT_STREAM, "persistentvolumes", "state", "ok", "listing", at(12)),
        change("dr2", AUDIT_STREAM, "persistentvolumes", "state", "listing", "ok", at(12.002)),
        # One that hung past blind_spot_after is blind from then on.
        change("dr2", AUDIT_STREAM, "persistentvolumeclaims", "state", "ok", "listing", at(12)),
        change("dr2", AUDIT_STREAM, "persistentvolumeclaims", "state", "listing", "blind", at(14)),
        change("dr2", AUDIT_STREAM, "persistentvolumeclaims", "state", "blind", "ok", at(15)),
        # An object auditd could not take in, held hours 5 to 6.
        change(
            "dr1", QUARANTINED, "PersistentVolumeClaim/shop/bad", EXISTS, "false", "true", at(5)
        ),
        change(
            "dr1", QUARANTINED, "PersistentVolumeClaim/shop/bad", EXISTS, "true", "false", at(6)
        ),
        # Many changes that are not about seeing, so that the read must pick the few that are.
        *(
            change(
                "dr1", "PersistentVolumeClaim", f"data-{i}", "phase", "Bound", "Lost", at(i / 10)
            )
            for i in range(-50, 200)
        ),
    ]


def spots(url: str, filters: Filters | None = None) -> list[tuple[str, str, str, str, str | None]]:
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            if s.query(TransitionRow).count() == 0:
                s.add_all(history())
                s.commit()
            return [
                (b["cluster"], b["what"], b["state"], b["started_at"], b["ended_at"])
                for b in _blind_spots(s, SINCE, UNTIL, filters or Filters())
            ]
    finally:
        engine.dispose()


def test_blind_spots_in_a_window_include_those_begun_before_it(db_url: str) -> None:
    assert spots(db_url) == [
        # Clipped to the window's start: before it is not this report's.
        ("dr1", "watch persistentvolumeclaims", "blind", "2026-03-01T00:00:00Z",
         "2026-03-01T03:00:00Z"),
        ("dr1", "object PersistentVolumeClaim/shop/bad", "quarantined", "2026-03-01T05:00:00Z",
         "2026-03-01T06:00:00Z"),
        ("dr2", "rbd probe replicapool", "failing", "2026-03-01T10:00:00Z", None),
        ("dr2", "watch persistentvolumeclaims", "blind", "2026-03-01T14:00:00Z",
         "2026-03-01T15:00:00Z"),
    ]  # fmt: skip


def test_blind_spots_narrow_to_the_clusters_asked_for(db_url: str) -> None:
    assert [s[:2] for s in spots(db_url, Filters(clusters=("dr2",)))] == [
        ("dr2", "rbd probe replicapool"),
        ("dr2", "watch persistentvolumeclaims"),
    ]
