"""The store on SQLite and PostgreSQL: migrations, model/migration agreement, writes, reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from auditd.inventory.inventory import Delta, Known, ObjectKey, Transition
from auditd.report.query import load_report
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.store.db import make_engine, session_factory
from auditd.store.errors import database_down
from auditd.store.load import load_objects, load_open_violations
from auditd.store.migrate import current_revision, head_revision, upgrade
from auditd.store.models import Base, NotificationRow, TransitionRow, ViolationRow
from auditd.store.writer import PlannedNotification, write_change, write_delta

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = ObjectKey("dr2", "PersistentVolumeClaim", "shop", "data")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a migrated database (SQLite, and PostgreSQL where it answers)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_migrations_create_the_schema_and_match_the_models(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision(db_url)
        assert {"objects", "transitions", "violations", "notifications"} <= set(
            inspect(engine).get_table_names()
        )
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/wal.db"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_the_writers_times_are_the_text_the_orm_writes_for_them(tmp_path: object) -> None:
    """write_delta formats SQLite's times itself (the hot path), reusing a second's text: the
    same text as the ORM's, for times that share a second or only some of its parts."""
    url = f"sqlite:///{tmp_path}/times.db"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    plus2 = timezone(timedelta(hours=2))
    # Each after T, from which it differs in one part only.
    times = [T, T + timedelta(microseconds=999_999)]  # the same second
    for other in (
        T + timedelta(days=30),  # the month
        datetime(2027, 11, 26, 12, 0, 0, 5, tzinfo=UTC),  # the year
        T + timedelta(days=1),
        T + timedelta(hours=1),
        T + timedelta(minutes=1),
        T + timedelta(seconds=1),  # microsecond 0
    ):
        times += [T, other]
    times += [datetime(2026, 11, 26, 14, 0, 0, 5, tzinfo=plus2)]  # a zone: the instant T + 5 us
    written = [Transition(KEY, "phase", None, str(i), t, "watch", False, str(i))
               for i, t in enumerate(times)]  # fmt: skip
    with sessions.begin() as s:
        write_delta(s, Delta(transitions=written), T)
        s.add_all(TransitionRow(cluster="orm", kind=KEY.kind, namespace=KEY.namespace,
                                name=KEY.name, field="phase", new=str(i), observed_at=t,
                                source="watch", late=False) for i, t in enumerate(times))  # fmt: skip
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT cluster, observed_at FROM transitions ORDER BY id"
        ).all()
    engine.dispose()
    ours = [text for cluster, text in stored if cluster == KEY.cluster]
    orm = [text for cluster, text in stored if cluster == "orm"]
    assert ours == orm
    assert ours[3] == "2026-12-26 12:00:00.000000" and ours[-1] == "2026-11-26 12:00:00.000005"


def _finding() -> Finding:
    return Finding(
        "pvc-on-secondary",
        str(KEY),
        "warning",
        "PVC on secondary",
        "dr2",
        "dr1-dr2",
        {"phase": "Bound"},
    )


def test_write_read_round_trip(engine: Engine) -> None:
    sessions = session_factory(engine)
    delta = Delta(
        transitions=[
            Transition(KEY, "exists", "false", "true", T, "watch", False, "11"),
            # A non-UTC zone and microseconds: stored as UTC, read back equal.
            Transition(
                KEY,
                "phase",
                None,
                "Bound",
                T.astimezone(timezone(timedelta(hours=2))) + timedelta(microseconds=7),
                "watch",
                True,
                "11",
            ),
        ],
        upserts={KEY: Known("u1", "11", {"phase": "Bound", "volumeName": None})},
    )
    change = step(None, _finding(), timedelta(0), T)
    assert change is not None
    with sessions.begin() as s:
        write_delta(s, delta, T)
        vid = write_change(s, change, [PlannedNotification("slack", {"text": "hi"})], T)
    # Upsert again with new facts: one row, updated.
    with sessions.begin() as s:
        write_delta(s, Delta(upserts={KEY: Known("u1", "12", {"phase": "Lost"})}), T)
    with sessions() as s:
        assert list(load_objects(s)) == [(KEY, Known("u1", "12", {"phase": "Lost"}))]
        active = load_open_violations(s)
        # The loaded violation carries no row id: its change finds the open row by rule and
        # subject, the one the database allows (uq_violations_open).
        resolved = step(active[("pvc-on-secondary", str(KEY))], None, timedelta(0), T)
        assert resolved is not None
        assert write_change(s, resolved, [], T) == vid
        n = s.scalars(select(NotificationRow)).one()
        assert (n.violation_id, n.event, n.status, n.payload) == (
            vid,
            "firing",
            "pending",
            {"text": "hi"},
        )
        rows = s.scalars(select(TransitionRow).order_by(TransitionRow.id)).all()
        assert [r.observed_at for r in rows] == [T, T + timedelta(microseconds=7)]  # UTC back
        assert rows[1].observed_at.tzinfo is UTC and rows[1].late is True and rows[0].late is False
        # Comparisons in SQL agree with the stored format.
        after = s.scalars(select(TransitionRow.field).where(TransitionRow.observed_at > T)).all()
        assert after == ["phase"]
    # Resolve, then delete the object.
    resolved = step(
        active[("pvc-on-secondary", str(KEY))], None, timedelta(0), T + timedelta(minutes=3)
    )
    assert resolved is not None
    with sessions.begin() as s:
        write_change(s, resolved, [], T)
        write_delta(s, Delta(deletes={KEY}), T)
    with sessions() as s:
        assert load_open_violations(s) == {}
        assert list(load_objects(s)) == []
        report = load_report(s, T - timedelta(hours=1), T + timedelta(hours=1))
    assert [t["field"] for t in report.transitions] == ["exists", "phase"]
    assert report.violations[0]["state"] == "resolved"
    assert report.violations[0]["notifications"] == ["firing:slack:pending"]


def test_database_allows_one_open_violation_per_subject(engine: Engine) -> None:
    sessions = session_factory(engine)
    change = step(None, _finding(), timedelta(0), T)
    assert change is not None
    with sessions.begin() as s:
        first = write_change(s, change, [], T)
    # A writer that did not know of the open episode (a restart) continues it...
    with sessions.begin() as s:
        assert write_change(s, change, [], T) == first
    # ...and the database itself refuses a second open row.
    row = {
        "rule": "pvc-on-secondary",
        "subject": str(KEY),
        "severity": "warning",
        "state": "firing",
        "summary": "x",
        "evidence": {},
        "first_seen": T,
    }
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(ViolationRow(**row))
    with sessions() as s:
        assert len(s.scalars(select(ViolationRow)).all()) == 1


def test_report_window_selects_overlapping_violations(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for i, (first, resolved) in enumerate(
            [
                (T - timedelta(days=3), T - timedelta(days=2)),  # before the window
                (T - timedelta(days=3), None),  # still open: in
                (T - timedelta(hours=2), T - timedelta(hours=1)),  # inside: in
                (T - timedelta(days=2), T - timedelta(hours=20)),
            ]  # overlaps the start: in
        ):
            s.add(
                ViolationRow(
                    rule="r",
                    subject=f"s{i}",
                    severity="warning",
                    state="resolved" if resolved else "firing",
                    summary="x",
                    evidence={},
                    first_seen=first,
                    fired_at=first,
                    resolved_at=resolved,
                )
            )
    with sessions() as s:
        data = load_report(s, T - timedelta(hours=24), T)
    assert [v["subject"] for v in data.violations] == ["s1", "s3", "s2"]


@pytest.mark.postgres
def test_two_processes_migrating_at_once_both_succeed(pg_url: str) -> None:
    """Two pods start together: both run the migrations; one waits for the other's lock."""
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "auditd", "db", "upgrade", "--db", pg_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    engine = make_engine(pg_url)
    assert current_revision(engine) == head_revision(pg_url)
    engine.dispose()


def test_two_deltas_in_one_transaction_write_each_object_once(engine: Engine) -> None:
    # PostgreSQL copies a batch's objects through a temporary table: the second write of a
    # transaction must not upsert the first one's rows again (an ON CONFLICT row twice fails).
    other = ObjectKey("dr2", "PersistentVolumeClaim", "shop", "logs")
    with session_factory(engine).begin() as s:
        write_delta(s, Delta(upserts={KEY: Known("u1", "1", {"phase": "Bound"})}), T)
        write_delta(s, Delta(upserts={other: Known("u2", "2", {"phase": "Lost"})}), T)
        write_delta(s, Delta(upserts={KEY: Known("u1", "3", {"phase": "Lost"})}), T)
    with session_factory(engine)() as s:
        assert dict(load_objects(s)) == {
            KEY: Known("u1", "3", {"phase": "Lost"}),
            other: Known("u2", "2", {"phase": "Lost"}),
        }


def test_a_refused_value_and_a_lost_session_are_told_apart(engine: Engine) -> None:
    # The hot path's writes bypass SQLAlchemy's statements (COPY on PostgreSQL): their errors
    # must still be SQLAlchemy's, or the writer could not tell an outage from poison.
    sessions = session_factory(engine)
    nul = Transition(KEY, "phase", None, "Bound\x00", T, "watch", False, "1")
    if engine.dialect.name == "postgresql":  # SQLite stores a NUL
        with pytest.raises(DBAPIError) as refused, sessions.begin() as s:
            write_delta(s, Delta(transitions=[nul]), T)
        assert not database_down(refused.value)
        with pytest.raises(DBAPIError) as lost, sessions.begin() as s:
            pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as killer:
                killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            write_delta(s, Delta(transitions=[nul._replace(new="Bound")]), T)
        assert database_down(lost.value)
    # The engine recovers: the lost connection was not handed out again.
    with sessions.begin() as s:
        write_delta(s, Delta(transitions=[nul._replace(new="Bound")]), T)
    with sessions() as s:
        assert [r.new for r in s.scalars(select(TransitionRow))] == ["Bound"]
