"""Retention: prune history older than the configured age, in small batches.

What goes: transitions older than the cutoff (except the newest of each object's field, which
is that field's state at any later window's start: without it a report would count a volume
that has been healthy for 100 days as unknown), samples, and violations that resolved before
the cutoff with their notifications and closed incidents.
What stays: open violations, open incidents, failover episodes (all of them), silences.

Which rows are each field's newest is asked once per prune, of the whole history in one
aggregate (``_make_heads``), not row by row through an index by object: such an index cost the
ingest writer a page per row it wrote, more as the history grew (migration 0013), for a
question asked hourly.

Each batch is its own short transaction with a pause after it, so the ingest writer (the only
other writer) waits at most one batch: on SQLite a batch of 1,000 transitions holds the write
lock for about 0.1 s (bench/report_scale.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Result,
    TableClause,
    and_,
    column,
    delete,
    exists,
    func,
    insert,
    select,
    table,
    text,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from auditd.store import analyze
from auditd.store.models import (
    AlertGroupRow,
    LagDayRow,
    MeasurementRow,
    NotificationRow,
    TransitionRow,
    ViolationRow,
)

log = logging.getLogger(__name__)


# Each old field's newest row, made once per prune (see _make_heads).
HEADS = "prune_heads"


def _make_heads(s: Session, cutoff: datetime) -> TableClause:
    """The newest row of each object's field that has a row older than ``cutoff``: the rows a
    prune keeps. One pass over the history (an aggregate, no index by object: the writer paid
    for such an index on every row it wrote, migration 0013). A row written after this is made
    can only supersede a head, never be one that the prune deletes: what is kept is at worst a
    row the next prune takes."""
    t = TransitionRow
    s.execute(text(f"DROP TABLE IF EXISTS {HEADS}"))
    # SQLite's INTEGER PRIMARY KEY is the rowid itself (no second index); PostgreSQL's ids
    # are 64-bit.
    id_type = "INTEGER" if s.get_bind().dialect.name == "sqlite" else "BIGINT"
    s.execute(text(f"CREATE TEMPORARY TABLE {HEADS} (id {id_type} PRIMARY KEY)"))
    newest = (
        select(func.max(t.id))
        .group_by(t.cluster, t.kind, t.namespace, t.name, t.field)
        .having(func.min(t.observed_at) < cutoff)
    )
    heads = table(HEADS, column("id"))
    s.execute(insert(heads).from_select(["id"], newest))
    return heads


def _deleted(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


@dataclass
class Pruned:
    cutoff: datetime
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, table: str, n: int) -> None:
        self.counts[table] = self.counts.get(table, 0) + n


class Pruner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        batch_size: int = 1000,
        pause: timedelta = timedelta(milliseconds=200),
        stop: threading.Event | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.batch_size = batch_size
        self.pause = pause.total_seconds()
        self.stop = stop or threading.Event()
        self.progress = progress or (lambda _what: None)

    def prune(self, cutoff: datetime, samples_cutoff: datetime | None = None) -> Pruned:
        """Prune before ``cutoff``; samples before ``samples_cutoff`` (default: the same)."""
        started = time.monotonic()
        result = Pruned(cutoff)
        phases = (
            (self._transitions, cutoff),
            (self._measurements, max(cutoff, samples_cutoff or cutoff)),
            (self._incidents, cutoff),
        )
        for phase, before in phases:
            if self.stop.is_set():
                break
            phase(before, result)
        if not self.stop.is_set():
            # What pruning keeps small, the planner should know the size of (SQLite only).
            analyze.refresh(self.sessions)
        result.seconds = time.monotonic() - started
        log.info(
            "pruned history before %s: %s in %.1fs",
            cutoff.isoformat(),
            ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items())) or "nothing",
            result.seconds,
        )
        return result

    def _batch_done(self, table: str, result: Pruned) -> bool:
        """Report progress, pause for the writer; True when asked to stop."""
        self.progress(f"{table}: {result.counts.get(table, 0)} deleted")
        if self.pause:
            self.stop.wait(self.pause)
        return self.stop.is_set()

    def _transitions(self, cutoff: datetime, result: Pruned) -> None:
        t = TransitionRow
        # One connection for the pass: the table of heads is temporary, that connection's own.
        with self.sessions.kw["bind"].connect() as conn:
            with self.sessions(bind=conn) as s, s.begin():
                heads = _make_heads(s, cutoff)
            after = 0
            while True:
                with self.sessions(bind=conn) as s, s.begin():
                    ids = s.scalars(
                        select(t.id)
                        .where(t.id > after, t.observed_at < cutoff)
                        .order_by(t.id)
                        .limit(self.batch_size)
                    ).all()
                    if not ids:
                        break
                    after = ids[-1]
                    kept = exists().where(heads.c.id == t.id)
                    n = _deleted(s.execute(delete(t).where(t.id.in_(ids), ~kept)))
                result.add("transitions", n)
                if self._batch_done("transitions", result):
                    break
            with self.sessions(bind=conn) as s, s.begin():
                s.execute(text(f"DROP TABLE IF EXISTS {HEADS}"))

    def _measurements(self, cutoff: datetime, result: Pruned) -> None:
        m = MeasurementRow
        self._by_id(m.__table__, m.id, m.at < cutoff, result)
        # A day's worst lag goes with the last of its samples: a day the cutoff falls in
        # keeps its row (the report reads the samples of a day its window cuts, not the row).
        # A day at a time: one row per image.
        d = LagDayRow
        while not self.stop.is_set():
            with self.sessions.begin() as s:
                day = s.scalar(select(func.min(d.day)).where(d.day <= cutoff - timedelta(days=1)))
                if day is None:
                    return
                n = _deleted(s.execute(delete(d).where(d.day == day)))
            result.add("lag_days", n)
            if self._batch_done("lag_days", result):
                return

    def _by_id(
        self,
        table: Any,  # a model's __table__ (typed as a FromClause by SQLAlchemy)
        id_col: InstrumentedAttribute[int],
        condition: ColumnElement[bool],
        result: Pruned,
    ) -> None:
        name = str(table.name)
        while True:
            with self.sessions.begin() as s:
                ids = s.scalars(
                    select(id_col).where(condition).order_by(id_col).limit(self.batch_size)
                ).all()
                if not ids:
                    return
                n = _deleted(s.execute(delete(table).where(id_col.in_(ids))))
            result.add(name, n)
            if self._batch_done(name, result):
                return

    def _incidents(self, cutoff: datetime, result: Pruned) -> None:
        n, v, g = NotificationRow, ViolationRow, AlertGroupRow
        old_violation = select(v.id).where(v.resolved_at < cutoff).scalar_subquery()
        old_group = select(g.id).where(g.closed_at < cutoff).scalar_subquery()
        open_group = select(g.id).where(g.closed_at.is_(None)).scalar_subquery()
        # Children first: alerts of old violations (not those an open incident still counts
        # among its members), then messages of old incidents...
        self._by_id(
            n.__table__,
            n.id,
            and_(
                n.violation_id.in_(old_violation),
                (n.group_id.is_(None)) | n.group_id.not_in(open_group),
            ),
            result,
        )
        self._by_id(
            n.__table__, n.id, and_(n.violation_id.is_(None), n.group_id.in_(old_group)), result
        )
        # ...then the incidents and violations nothing refers to any more.
        if self.stop.is_set():
            return
        self._by_id(
            g.__table__,
            g.id,
            and_(g.closed_at < cutoff, ~exists().where(n.group_id == g.id)),
            result,
        )
        self._by_id(
            v.__table__,
            v.id,
            and_(v.resolved_at < cutoff, ~exists().where(n.violation_id == v.id)),
            result,
        )
