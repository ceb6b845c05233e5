"""Plans the report depends on at scale, asserted as plans (never as times): a query that falls
off its index is correct and slow, and only bench/report_scale.py would notice."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, insert

from auditd.report.query import Filters, _class_before, _class_changes
from auditd.store import analyze
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import TransitionRow

WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def _statements(engine: Engine, run: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with session_factory(engine)() as s:
            run(s)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_an_images_class_before_a_window_is_one_seek_in_its_partial_index(db_url: str) -> None:
    """Thousands of images are asked about at once (those gone in a window). The history has
    no index by object (migration 0013): only the partial index of class changes by image
    makes each ask a seek, and on PostgreSQL only if the generic plan, which psycopg's
    prepared statement gets from its sixth run, can use it. A seek, not a scan of the whole
    index: with kind and field leading, PostgreSQL named the index in its plan and read all
    of it, every image's changes, for each image (migration 0015)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        _class_changes_of_many_images(engine)
        keys = [("dr1", "replicapool", f"csi-vol-{i}") for i in range(3)]
        [(statement, params), *_] = _statements(engine, lambda s: _class_before(s, keys, WHEN))
        with engine.connect() as c:
            if engine.dialect.name == "sqlite":
                plan = " ".join(
                    str(r[-1]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                )
            else:
                c.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                c.exec_driver_sql("PREPARE class_before AS " + _numbered(statement, params))
                # EXECUTE's arguments are untyped literals, typed by the prepared statement.
                args = ", ".join(_literal(v) for v in params.values())
                plan = " ".join(
                    r[0]
                    for r in c.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE class_before({args})"
                    )
                )
                # The top node's buffers: a seek reads a page or two per level of the index
                # (with kind and field leading, the whole index: 2,335 buffers here).
                pages = sum(int(n) for n in re.findall(r"shared \w+=(\d+)", plan.split("->")[0]))
                assert pages <= 10, plan
        assert "ix_transitions_image_class_by_image" in plan, plan
        if engine.dialect.name == "sqlite":
            assert "(cluster=? AND namespace=? AND name=?" in plan, plan
    finally:
        engine.dispose()


def _class_changes_of_many_images(engine: Engine) -> None:
    """2,000 images' class changes, ten each, before WHEN: what a seek skips, a scan reads."""
    rows = [
        {
            "cluster": "dr1",
            "kind": "RbdImage",
            "namespace": "replicapool",
            "name": f"csi-vol-{i % 2000}",
            "field": "class",
            "old": "healthy",
            "new": "degraded",
            "observed_at": datetime(2026, 2, 1 + i % 28, tzinfo=UTC),
            "source": "probe",
            "late": False,
        }
        for i in range(20_000)
    ]
    with engine.begin() as c:
        c.execute(insert(TransitionRow), rows)
    analyze.refresh(session_factory(engine))  # SQLite's statistics, as the daemon keeps them
    if engine.dialect.name == "postgresql":  # as autovacuum would
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("ANALYZE transitions")


def _numbered(statement: str, params: dict[str, Any]) -> str:
    """psycopg's %(name)s placeholders as PREPARE's $1, $2, ... in the order of ``params``."""
    for n, key in enumerate(params, 1):
        statement = statement.replace(f"%({key})s", f"${n}")
    return statement


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


def test_a_windows_class_changes_are_read_from_their_covering_index_after_analyze(
    tmp_path: Any,
) -> None:
    """The healthy share streams every class change of the window (400,000 over a month of
    10,000 volumes). Once the history is analyzed, SQLite's statistics average rows over every
    kind and field, so (kind, field, observed_at) looks more selective than the partial index
    of class changes, and the planner read each change's row from the table, 2.4x the time.
    Here, as in a real history, class changes are the most common (kind, field) among many."""
    url = f"sqlite:///{tmp_path / 'auditd.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        rows = [("RbdImage", "class")] * 400 + [
            (kind, field)
            for kind in ("PersistentVolumeClaim", "PersistentVolume", "VolumeReplication")
            for field in ("phase", "exists", "volumeName", "state", "labels")
            for _ in range(40)
        ]
        with engine.begin() as c:
            c.exec_driver_sql(
                "INSERT INTO transitions (cluster, kind, namespace, name, field, old, new,"
                " observed_at, source, late) VALUES (?, ?, ?, ?, ?, 'a', 'b', ?, 'watch', 0)",
                [
                    ("dr1", kind, "replicapool", f"img-{i % 50}", field, f"2026-02-{1 + i % 28:02d} 00:00:00.000000")
                    for i, (kind, field) in enumerate(rows)
                ],
            )  # fmt: skip
        assert analyze.refresh(session_factory(engine))
        since = datetime(2026, 2, 1, tzinfo=UTC)
        found: list[Any] = []
        [(statement, params)] = _statements(
            engine,
            lambda s: found.extend(
                s.connection().execute(_class_changes(s, since, WHEN, Filters(clusters=("dr1",))))
            ),
        )
        assert len(found) == 400
        with engine.connect() as c:
            plan = " ".join(
                str(r[-1]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            )
        assert "COVERING INDEX ix_transitions_image_class " in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # read in time order: no sort
    finally:
        engine.dispose()
