"""Persist one ingest batch in one transaction: transitions, object state, violations, outbox.

Writing the outbox rows in the same transaction as the violation change is what makes delivery
trustworthy: a notification exists if and only if the change it announces was committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    case,
    delete,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from auditd.codec import dumps_facts
from auditd.inventory.inventory import Delta
from auditd.inventory.records import ImageRecord, RecordKey
from auditd.rules.lifecycle import Change
from auditd.rules.windows import Episode
from auditd.store import episode_steps
from auditd.store.models import (
    EpisodeRow,
    ImageRecordRow,
    LagDayRow,
    MeasurementRow,
    NotificationRow,
    ObjectRow,
    ProbeHealthRow,
    StreamHealthRow,
    ViolationRow,
)


@dataclass(frozen=True)
class PlannedNotification:
    sink: str
    payload: dict[str, Any]


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _upsert(
    session: Session, model: type[Any], keys: list[str], rows: list[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_table(model))
    stmt = ins.on_conflict_do_update(
        index_elements=keys,
        set_={c: ins.excluded[c] for c in rows[0] if c not in keys},
    )
    session.execute(stmt, rows)


def write_stream_health(session: Session, rows: list[dict[str, Any]]) -> None:
    _upsert(session, StreamHealthRow, ["cluster", "kind"], rows)


def write_probe_health(session: Session, rows: list[dict[str, Any]]) -> None:
    # Several results for one pool can share a batch: the last one is the state.
    latest = {(r["cluster"], r["pool"]): r for r in rows}
    _upsert(session, ProbeHealthRow, ["cluster", "pool"], list(latest.values()))


def write_image_records(
    session: Session, changed: dict[RecordKey, ImageRecord], gone: list[RecordKey]
) -> None:
    rows = [
        {"cluster": c, "pool": p, "image": i, **record.to_row()}
        for (c, p, i), record in sorted(changed.items())
    ]
    _upsert(session, ImageRecordRow, ["cluster", "pool", "image"], rows)
    if gone:
        t = _table(ImageRecordRow)
        session.execute(delete(t).where(tuple_(t.c.cluster, t.c.pool, t.c.image).in_(gone)))


def write_measurements(session: Session, rows: list[dict[str, Any]]) -> None:
    """The samples, and each image's worst lag of the day with them (LagDayRow)."""
    if not rows:
        return
    session.execute(insert(_table(MeasurementRow)), rows)
    worst: dict[tuple[str, str, str, datetime], float | None] = {}
    for r in rows:
        at = r["at"].astimezone(UTC)
        key = (r["cluster"], r["pool"], r["image"], datetime(at.year, at.month, at.day, tzinfo=UTC))
        lag, held = r["lag_seconds"], worst.get(key)
        worst[key] = lag if held is None or (lag is not None and lag > held) else held
    t = _table(LagDayRow)
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(t)
    held_lag, new_lag = t.c.worst_lag_seconds, ins.excluded.worst_lag_seconds
    # The larger of the two; an unknown lag never replaces a known one.
    keep = case((or_(held_lag.is_(None), new_lag > held_lag), new_lag), else_=held_lag)
    session.execute(
        ins.on_conflict_do_update(
            index_elements=["cluster", "pool", "image", "day"], set_={"worst_lag_seconds": keep}
        ),
        [
            {"cluster": c, "pool": p, "image": i, "day": day, "worst_lag_seconds": lag}
            for (c, p, i, day), lag in sorted(worst.items())
        ],
    )


# The two writes on the hot path (every watch event) go straight to the DBAPI: SQLAlchemy's
# per-row bind processing cost 3x the insert itself (bench/watch_scale.py). On PostgreSQL they
# are COPYs, a third less time than executemany's pipeline (1,000 events: 33 against 48 ms).
# The values are exactly what the ORM types would bind: tests/store/test_store.py reads these
# rows back through the ORM on both databases.
_TRANSITION_COLUMNS = (
    "cluster, kind, namespace, name, field, old, new, observed_at, source, late, resource_version"
)
_OBJECT_COLUMNS = "cluster, kind, namespace, name, uid, resource_version, facts, updated_at"
_OBJECT_CONFLICT = (
    " ON CONFLICT (cluster, kind, namespace, name) DO UPDATE SET uid = excluded.uid,"
    " resource_version = excluded.resource_version, facts = excluded.facts,"
    " updated_at = excluded.updated_at"
)
# PostgreSQL: the batch's objects are copied here, then upserted in one statement. Made once
# per connection, emptied at every commit; in the same transaction as its use, so a pooler
# that hands out server connections per transaction sees it too.
_OBJECTS_IN = (
    "CREATE TEMP TABLE IF NOT EXISTS objects_in (cluster text, kind text, namespace text,"
    " name text, uid text, resource_version text, facts json, updated_at timestamptz)"
    " ON COMMIT DELETE ROWS"
)


# The text of the second the last rows were observed in: a burst's rows share it.
_second: dict[tuple[int, int, int, int, int, int], str] = {}


def _sqlite_time(t: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, naive UTC (see UTCDateTime). One row per
    transition: isoformat was 1.1 us a row (a twentieth of the ingest thread in
    bench/watch_scale.py, strftime more), the second's text reused and the microseconds
    appended 0.5."""
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    second = (t.year, t.month, t.day, t.hour, t.minute, t.second)
    text = _second.get(second)
    if text is None:
        _second.clear()
        text = _second[second] = t.isoformat(" ", "seconds")[:19]
    return f"{text}.{t.microsecond:06d}"


def write_delta(session: Session, delta: Delta, now: datetime) -> None:
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    ts: Callable[[datetime], Any] = (lambda t: t) if postgres else _sqlite_time
    transitions = [
        (
            t.key.cluster,
            t.key.kind,
            t.key.namespace,
            t.key.name,
            t.field,
            t.old,
            t.new,
            ts(t.observed_at),
            t.source,
            t.late,
            t.resource_version,
        )
        for t in delta.transitions
    ]
    updated = ts(now)
    objects = [
        (k.cluster, k.kind, k.namespace, k.name, v.uid, v.resource_version, dumps_facts(v.facts), updated)
        for k, v in delta.upserts.items()
    ]  # fmt: skip
    if postgres:
        if transitions:
            _copy(conn, f"COPY transitions ({_TRANSITION_COLUMNS}) FROM STDIN", transitions)
        if objects:
            conn.exec_driver_sql(_OBJECTS_IN)
            _copy(conn, "COPY objects_in FROM STDIN", objects)
            # Emptied as it is read: a second batch in this transaction finds it empty too.
            conn.exec_driver_sql(
                "WITH batch AS (DELETE FROM objects_in RETURNING *)"
                f" INSERT INTO objects ({_OBJECT_COLUMNS}) SELECT * FROM batch" + _OBJECT_CONFLICT
            )
    else:
        if transitions:
            conn.exec_driver_sql(
                f"INSERT INTO transitions ({_TRANSITION_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                transitions,
            )
        if objects:
            conn.exec_driver_sql(
                f"INSERT INTO objects ({_OBJECT_COLUMNS}) VALUES ({', '.join('?' * 8)})"
                + _OBJECT_CONFLICT,
                objects,
            )
    if delta.deletes:
        keys = sorted((k.cluster, k.kind, k.namespace, k.name) for k in delta.deletes)
        for i in range(0, len(keys), 500):  # stay under bind-parameter limits
            session.execute(
                delete(ObjectRow).where(
                    tuple_(
                        ObjectRow.cluster, ObjectRow.kind, ObjectRow.namespace, ObjectRow.name
                    ).in_(keys[i : i + 500])
                )
            )


def _copy(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY ``rows`` in through psycopg, its errors raised as exec_driver_sql raises them
    (SQLAlchemy's classes, the connection invalidated when it was lost), so that the ingest
    writer tells an outage from a refused value as it does for every other statement."""
    dbapi_conn: Any = conn.connection.dbapi_connection  # psycopg's: typed as PEP 249's
    dbapi = conn.dialect.loaded_dbapi
    try:
        with dbapi_conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as e:
        lost = conn.dialect.is_disconnect(e, dbapi_conn, None)
        if lost:
            conn.invalidate(e)
        raise DBAPIError.instance(
            statement, None, e, dbapi.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from e


def write_change(
    session: Session, change: Change, notifications: list[PlannedNotification], now: datetime
) -> int:
    """Store one violation change and its notifications; returns the violation's row id.

    The open episode of a rule and subject is found by that pair (the database keeps at most
    one open, uq_violations_open), so the domain's violation carries no row id: a restart that
    did not know of an open episode continues it rather than fail the whole batch forever."""
    v = change.violation
    violation_id = session.scalar(
        select(ViolationRow.id).where(
            ViolationRow.rule == v.rule,
            ViolationRow.subject == v.subject,
            ViolationRow.resolved_at.is_(None),
        )
    )
    if violation_id is None:
        row = ViolationRow(
            rule=v.rule,
            subject=v.subject,
            pair=v.pair,
            cluster=v.cluster,
            namespace=v.evidence.get("namespace"),
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
        session.execute(
            update(ViolationRow)
            .where(ViolationRow.id == violation_id)
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


def write_episodes(session: Session, episodes: list[Episode]) -> None:
    """Update each episode's row, or insert it the first time. An episode is known by its
    volume and start (one window per volume at a time), so the domain's carries no row id."""
    for ep in episodes:
        values = {
            "pair": ep.volume.pair,
            "pool": ep.volume.pool,
            "image": ep.volume.image,
            "trigger": ep.trigger,
            "from_cluster": ep.from_cluster,
            "to_cluster": ep.to_cluster,
            "started_at": ep.started_at,
            "ended_at": ep.ended_at,
            "rto_seconds": ep.rto_seconds,
            "steps": episode_steps.to_json(ep),
        }
        e = EpisodeRow
        updated = session.execute(
            update(e)
            .where(
                e.pair == ep.volume.pair,
                e.pool == ep.volume.pool,
                e.image == ep.volume.image,
                e.started_at == ep.started_at,
            )
            .values(**values)
        )
        if cast(CursorResult[Any], updated).rowcount == 0:
            session.add(EpisodeRow(**values))
