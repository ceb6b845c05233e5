"""The planner's statistics of a SQLite history: made by the hourly prune, refreshed when the
history has doubled or halved (auditd/store/analyze.py). The daemon never analyzed before,
so production ran the plans bench/report_scale.py (which always analyzed) never saw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from auditd.store import analyze
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.retention import Pruner

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _add(sessions: sessionmaker[Session], n: int, start: int = 0) -> None:
    """n transitions, one in ten an image's class change (the partial indexes hold those)."""
    with sessions.begin() as s:
        s.execute(
            text(
                "INSERT INTO transitions (cluster, kind, namespace, name, field, old, new,"
                " observed_at, source, late) VALUES ('dr1', :kind, 'app', :name, :field, 'a',"
                " 'b', :at, 'watch', 0)"
            ),
            [
                {
                    "kind": "RbdImage" if i % 10 == 0 else "PersistentVolumeClaim",
                    "field": "class" if i % 10 == 0 else "phase",
                    "name": f"data-{i}",
                    "at": "2026-11-26 11:00:00.000000",
                }
                for i in range(start, start + n)
            ],
        )


def _analyzed(sessions: sessionmaker[Session]) -> int | None:
    """The table's size as its statistics say: what its full indexes hold."""
    with sessions() as s:
        if not s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            return None
        stats = s.execute(
            text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'transitions'")
        ).all()
        full = {int(stat.split()[0]) for idx, stat in stats if "image_class" not in idx}
        assert len(full) == 1
        return full.pop()


def test_a_sqlite_history_is_analyzed_when_it_has_no_statistics_then_when_it_doubles(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    _add(sessions, 100)
    assert _analyzed(sessions) is None
    assert analyze.refresh(sessions)
    assert _analyzed(sessions) == 100
    _add(sessions, 90, start=100)
    assert not analyze.refresh(sessions)  # 190 rows: not yet twice 100
    assert _analyzed(sessions) == 100
    _add(sessions, 20, start=190)
    assert analyze.refresh(sessions)
    assert _analyzed(sessions) == 210
    # Not again for a history of the same size: the partial indexes' few rows (one in ten
    # here) are not the table's size.
    assert not analyze.refresh(sessions)


def test_the_prune_analyzes_what_it_keeps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    _add(sessions, 50)
    Pruner(sessions, pause=timedelta(0)).prune(NOW - timedelta(days=30))
    assert _analyzed(sessions) == 50


def test_stale_statistics() -> None:
    assert analyze.stale(None, 0)
    assert not analyze.stale(1000, 1999) and analyze.stale(1000, 2001)
    assert not analyze.stale(1000, 501) and analyze.stale(1000, 499)
    assert analyze.stale(0, 3) and not analyze.stale(0, 0)


@pytest.mark.postgres
def test_postgresql_is_left_to_its_autovacuum(pg_url: str) -> None:
    upgrade(pg_url)
    assert not analyze.refresh(session_factory(make_engine(pg_url)))
