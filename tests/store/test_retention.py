"""Retention over the demo's history (built by the real pipeline), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from story_history import T0, UNTIL, played, report

from auditd.cli import main
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.store.db import make_engine, session_factory
from auditd.store.models import (
    AlertGroupRow,
    EpisodeRow,
    MeasurementRow,
    NotificationRow,
    TransitionRow,
    ViolationRow,
)
from auditd.store.retention import Pruner
from auditd.store.writer import write_change

CUTOFF = T0 + timedelta(minutes=45)  # after the failover, before the split brain


def count(sessions, model, *where) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_prune_keeps_what_later_reports_need(db_url: str) -> None:
    played(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    # An incident still open from long ago: never pruned, however old.
    old = step(
        None, Finding("split-brain", "p/pool/old", "critical", "s", None, "p", {}), timedelta(0), T0
    )
    assert old is not None
    with sessions.begin() as s:
        write_change(s, old, [], T0)
    later = (CUTOFF, UNTIL)
    before_volumes = _volumes(db_url, *later)
    steps: list[str] = []
    result = Pruner(sessions, batch_size=100, pause=timedelta(0), progress=steps.append).prune(
        CUTOFF
    )
    assert result.counts["transitions"] > 0 and len(steps) > 2  # in batches
    # Nothing older than the cutoff survives but each field's last state before it.
    with sessions() as s:
        old_rows = s.execute(
            select(
                TransitionRow.cluster,
                TransitionRow.kind,
                TransitionRow.namespace,
                TransitionRow.name,
                TransitionRow.field,
                func.count(),
            )
            .where(TransitionRow.observed_at < CUTOFF)
            .group_by(
                TransitionRow.cluster,
                TransitionRow.kind,
                TransitionRow.namespace,
                TransitionRow.name,
                TransitionRow.field,
            )
        ).all()
    assert old_rows and all(n == 1 for *_, n in old_rows)
    assert count(sessions, MeasurementRow, MeasurementRow.at < CUTOFF) == 0
    # Incidents resolved before the cutoff are gone with their notifications and groups; the
    # split brain (after it) and the old open one stay; episodes always stay.
    with sessions() as s:
        left = {(v.rule, v.state) for v in s.scalars(select(ViolationRow))}
    assert left == {("split-brain", "resolved"), ("split-brain", "firing")}
    assert count(sessions, AlertGroupRow, AlertGroupRow.closed_at < CUTOFF) == 0
    # The split brain's two alerts and its incident's two messages.
    assert count(sessions, NotificationRow) == 4
    assert count(sessions, EpisodeRow) == 1
    # ...and a report of the window after the cutoff reads exactly as before pruning.
    assert _volumes(db_url, *later) == before_volumes
    assert {v["rule"] for v in report(db_url).open_incidents} == {"split-brain"}
    engine.dispose()


def _volumes(url: str, since: datetime, until: datetime) -> list[dict[str, object]]:
    from auditd.report.query import load_report

    engine = make_engine(url)
    with session_factory(engine)() as s:
        data = load_report(s, since, until)
    engine.dispose()
    return data.volumes


def test_prune_stops_between_batches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    played(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    stop = threading.Event()
    batches: list[str] = []

    def progress(what: str) -> None:
        batches.append(what)
        stop.set()  # asked to stop during the first batch

    Pruner(sessions, 100, timedelta(0), stop, progress).prune(UNTIL)
    assert len(batches) == 1
    assert count(sessions, TransitionRow) > 0
    engine.dispose()


def test_db_prune_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    played(url)  # the story is from 2026-11-26 08:00: older than 1h when the test runs
    assert main(["db", "prune", "--db", url, "--keep", "1h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pruned history before") and "transitions" in out
    assert main(["db", "prune", "--db", url, "--keep", "soon"]) == 2
    assert main(["db", "prune", "--db", url, "--keep", "0"]) == 0


def test_prune_keeps_each_fields_newest_row_and_no_other(db_url: str) -> None:
    """Exactly which rows go, against the question asked directly: a row older than the
    cutoff goes when a newer row of the same object's field exists anywhere, and one written
    while the prune runs can only make it keep more (never delete a field's newest)."""
    from auditd.store.migrate import upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    at = [T0 + timedelta(minutes=m) for m in range(10)]

    def row(name: str, field: str, when: datetime) -> TransitionRow:
        return TransitionRow(
            cluster="dr1", kind="PersistentVolumeClaim", namespace="app", name=name,
            field=field, old="a", new="b", observed_at=when, source="watch",
        )  # fmt: skip

    with sessions.begin() as s:
        rows = {
            # superseded by a row after the cutoff: both old rows go
            "a1": row("a", "phase", at[0]), "a2": row("a", "phase", at[1]),
            "a3": row("a", "phase", at[8]),
            # the newest is old: it stays, the one before goes
            "b1": row("b", "phase", at[0]), "b2": row("b", "phase", at[2]),
            # another field of the same object, and the same field of another cluster
            "b-size": row("b", "size", at[1]),
            "c1": row("c", "phase", at[3]),
        }  # fmt: skip
        rows["c-dr2"] = row("c", "phase", at[4])
        rows["c-dr2"].cluster = "dr2"
        s.add_all(rows.values())
    ids = {k: v.id for k, v in rows.items()}

    written: list[int] = []

    def progress(_what: str) -> None:
        # A row of b's phase arrives mid-prune: b2 is superseded now, but the prune already
        # knew b2 as the newest. Keeping it is safe (the next prune takes it).
        if not written:
            with sessions.begin() as s:
                late = row("b", "phase", at[9])
                s.add(late)
            written.append(late.id)

    cutoff = at[5]
    Pruner(sessions, batch_size=2, pause=timedelta(0), progress=progress).prune(cutoff)
    with sessions() as s:
        left = set(s.scalars(select(TransitionRow.id)))
    assert left == {ids["a3"], ids["b2"], ids["b-size"], ids["c1"], ids["c-dr2"], *written}
    # The next prune sees b's late row and takes b2.
    Pruner(sessions, batch_size=2, pause=timedelta(0)).prune(cutoff)
    with sessions() as s:
        left = set(s.scalars(select(TransitionRow.id)))
    assert left == {ids["a3"], ids["b-size"], ids["c1"], ids["c-dr2"], *written}
    engine.dispose()
