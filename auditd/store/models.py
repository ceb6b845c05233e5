"""The history database schema. Alembic migrations in ``migrations/`` are the only thing that
creates it; ``tests/store/test_store.py`` proves these models and the migrations agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class ObjectRow(Base):
    """Last known state of one watched object: what a restart reconciles against."""

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("cluster", "kind", "namespace", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(253), server_default="")
    name: Mapped[str] = mapped_column(String(253))
    # Opaque to clients (Kubernetes promises no length): text.
    uid: Mapped[str | None] = mapped_column(Text)
    resource_version: Mapped[str | None] = mapped_column(Text)
    facts: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


# inventory/rbd_facts.py's RBD_IMAGE and its "class" fact (the store does not import the
# inventory): the rows of ix_transitions_image_class.
IMAGE_CLASS = text("kind = 'RbdImage' AND field = 'class'")
IMAGE_CLASS_INDEX = "ix_transitions_image_class"


class TransitionRow(Base):
    """Append-only history: one row per changed field of one object."""

    __tablename__ = "transitions"
    __table_args__ = (
        Index(None, "observed_at"),
        # No index by object: its key put every row at a random place, a page written per row
        # and growing with the history (migration 0013). Retention asks a table it makes.
        # The report's per-kind questions (image states, stream and probe health) in a window.
        Index(None, "kind", "field", "observed_at"),
        # The report's healthy share reads every class change of the window in time order:
        # from this index alone (no row lookups, no sort). Partial: class changes only.
        Index(
            IMAGE_CLASS_INDEX,
            *("kind", "field", "observed_at", "id", "cluster", "namespace", "name", "old", "new"),
            sqlite_where=IMAGE_CLASS,
            postgresql_where=IMAGE_CLASS,
        ),
        # An image's last class before a window (report/query.py's _class_before): one seek
        # per image. The image leads: PostgreSQL drops the predicate's kind and field from a
        # scan's conditions, and with them leading read the whole index (migration 0015).
        # `new` in it, or the covering index above wins and scans back through every image's
        # changes; kind and field at its end, or it does not cover the query on SQLite.
        Index(
            "ix_transitions_image_class_by_image",
            *("cluster", "namespace", "name", "observed_at", "id", "new", "kind", "field"),
            sqlite_where=IMAGE_CLASS,
            postgresql_where=IMAGE_CLASS,
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(253), server_default="")
    name: Mapped[str] = mapped_column(String(253))
    # A fact's name: ours, or "condition." + a condition type (a qualified name, up to 316).
    field: Mapped[str] = mapped_column(String(330))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    observed_at: Mapped[datetime]
    # watch | list | relist | resync | probe
    source: Mapped[str] = mapped_column(String(16))
    # True when the change happened while auditd could not see it (found on resync/relist).
    late: Mapped[bool] = mapped_column(Boolean, server_default=false())
    resource_version: Mapped[str | None] = mapped_column(Text)


class ViolationRow(Base):
    """One episode of a rule being violated by one subject: pending -> firing -> resolved."""

    __tablename__ = "violations"
    __table_args__ = (
        # At most one open episode per rule and subject, enforced by the database.
        Index(
            "uq_violations_open",
            "rule",
            "subject",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index(None, "first_seen"),
        Index(None, "resolved_at"),
        Index(None, "fired_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512))
    pair: Mapped[str | None] = mapped_column(String(63))
    cluster: Mapped[str | None] = mapped_column(String(63))
    # The Kubernetes namespace of the volume or object, when there is one (report filters).
    namespace: Mapped[str | None] = mapped_column(String(253))
    severity: Mapped[str] = mapped_column(String(16))
    # pending | firing | resolved | inactive (cleared before it ever fired)
    state: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]]
    first_seen: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]


class AlertGroupRow(Base):
    """An incident: the alerts of one sink with equal group_by labels, announced together in one
    message and its thread. Open until every member has resolved."""

    __tablename__ = "alert_groups"
    __table_args__ = (
        Index(
            "uq_alert_groups_open",
            "sink",
            "group_key",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        Index(None, "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sink: Mapped[str] = mapped_column(String(32))
    group_key: Mapped[str] = mapped_column(String(512))
    labels: Mapped[dict[str, Any]]
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    last_flush_at: Mapped[datetime | None]
    # What the last message said: {"members": {violation_id: [state, severity]}}.
    announced: Mapped[dict[str, Any]]


class NotificationRow(Base):
    """The outbox: written in the same transaction as the violation change it announces.

    Two kinds of rows: an alert (violation_id set) is one violation's firing or resolve; the
    group stage folds alerts into their incident (status "grouped", group_id set) and writes
    the incident's messages as rows of their own (group_id set, violation_id NULL).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "group_id"),
        Index(None, "created_at"),
        # An alert's incident, its report delivery, and retention look rows up by violation.
        Index(None, "violation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    violation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("violations.id"))
    group_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("alert_groups.id"))
    # alerts: firing | resolved; incident messages: firing | update | resolved | repeat
    event: Mapped[str] = mapped_column(String(16))
    sink: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    # pending | sending (an HTTP call in flight, or interrupted by a crash) | sent | dead |
    # silenced | inhibited (recorded, never sent) | grouped (an alert told by its incident's
    # messages)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(64))


class StreamHealthRow(Base):
    """The latest health of each watch stream, written by the daemon for `auditd status`."""

    __tablename__ = "stream_health"

    cluster: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63), primary_key=True)
    # ok | blind | absent (the coarse state history records)
    state: Mapped[str] = mapped_column(String(16))
    connected: Mapped[bool] = mapped_column(Boolean)
    synced: Mapped[bool] = mapped_column(Boolean)
    last_event_at: Mapped[datetime | None]
    last_list_at: Mapped[datetime | None]
    disconnected_since: Mapped[datetime | None]
    lists: Mapped[int] = mapped_column(Integer)
    relists: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    bad_events: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    resource_version: Mapped[str | None] = mapped_column(Text)
    # When the daemon last wrote this row: an old value means nobody is watching.
    reported_at: Mapped[datetime]


class MeasurementRow(Base):
    """Sampled replication metrics per image (not transitions: they change every cycle)."""

    __tablename__ = "measurements"
    __table_args__ = (
        # lag_seconds too: the report's worst lag per image is read from the index alone.
        Index(None, "cluster", "pool", "image", "at", "lag_seconds"),
        Index(None, "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63))
    pool: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(String(253))
    at: Mapped[datetime]
    # now minus the last snapshot the secondary has synced
    lag_seconds: Mapped[float | None] = mapped_column(Float)
    bytes_per_second: Mapped[float | None] = mapped_column(Float)
    last_sync_seconds: Mapped[float | None] = mapped_column(Float)
    last_sync_bytes: Mapped[int | None] = mapped_column(BigInteger)


class LagDayRow(Base):
    """Each image's worst sampled lag per UTC day, kept with its samples as they are written
    (store/writer.py): a month's report reads these for the days wholly in its window (140,000
    rows at 10,000 images over 14 days of samples) and samples only for the days it cuts,
    not every sample (3.4M)."""

    __tablename__ = "lag_days"
    __table_args__ = (Index(None, "day"),)

    cluster: Mapped[str] = mapped_column(String(63), primary_key=True)
    pool: Mapped[str] = mapped_column(String(128), primary_key=True)
    image: Mapped[str] = mapped_column(String(253), primary_key=True)
    day: Mapped[datetime] = mapped_column(primary_key=True)  # its 00:00 UTC
    # The largest lag_seconds sampled that day; None while every sample's lag was unknown.
    worst_lag_seconds: Mapped[float | None] = mapped_column(Float)


class ProbeHealthRow(Base):
    """The latest outcome of each pool's probes, for `auditd status`."""

    __tablename__ = "probe_health"

    cluster: Mapped[str] = mapped_column(String(63), primary_key=True)
    pool: Mapped[str] = mapped_column(String(128), primary_key=True)
    # ok | failing
    state: Mapped[str] = mapped_column(String(16))
    last_attempt_at: Mapped[datetime]
    last_success_at: Mapped[datetime | None]
    duration_ms: Mapped[int] = mapped_column(Integer)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    images: Mapped[int | None] = mapped_column(Integer)


class EpisodeRow(Base):
    """A failover or relocate of one volume: when, from where to where, its steps and RTO.
    Written when the window opens (ended_at NULL) so that a restart resumes it."""

    __tablename__ = "failover_episodes"
    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "pair", "pool", "image", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pair: Mapped[str] = mapped_column(String(63))
    pool: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(String(253))
    trigger: Mapped[str] = mapped_column(String(64))
    from_cluster: Mapped[str | None] = mapped_column(String(63))
    to_cluster: Mapped[str | None] = mapped_column(String(63))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    rto_seconds: Mapped[float | None] = mapped_column(Float)
    steps: Mapped[dict[str, Any]]


class SilenceRow(Base):
    """A silence: notifications whose labels match every matcher, while active, are recorded
    (status "silenced") and not sent."""

    __tablename__ = "silences"
    __table_args__ = (Index(None, "ends_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # {"matchers": [[label, op, value], ...]} (matchers.py); rows from before operators
    # hold [label, glob], read as label=glob
    matchers: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    author: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expired_at: Mapped[datetime | None]


class ImageRecordRow(Base):
    """What a site's rbd-mirror last wrote about an image and when (``inventory/records.py``):
    the freshness the verdicts weigh. Kept so a restart and `auditd explain` judge as the
    running daemon did."""

    __tablename__ = "rbd_image_records"

    cluster: Mapped[str] = mapped_column(String(63), primary_key=True)
    pool: Mapped[str] = mapped_column(String(128), primary_key=True)
    image: Mapped[str] = mapped_column(String(253), primary_key=True)
    updated_at: Mapped[datetime | None]
    primary: Mapped[bool | None] = mapped_column(Boolean)
    role_changed_at: Mapped[datetime | None]
    demoted_at: Mapped[datetime | None]
    synced_at: Mapped[datetime | None]
    seen_at: Mapped[datetime]


class LeaderRow(Base):
    """Who leads (PostgreSQL replicas, daemon/leader.py), renewed every few seconds by the
    leader: `auditd status` reads it. The lock itself is a PostgreSQL advisory lock."""

    __tablename__ = "leaders"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
