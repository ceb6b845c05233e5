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
