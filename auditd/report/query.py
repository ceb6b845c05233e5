"""Read a window of history for the report, one section per function.

Counting and summing happen in SQL (GROUP BY); Python receives aggregates and the bounded
lists a person reads (open incidents, episodes, the last transitions of the timeline). The one
exception is the healthy share per image: it is time-weighted over the window's class changes,
which stream through Python once in index order, because SQL's per-image window function must
sort them first. That is what keeps a day's report over a million transitions under a second,
and a month's within three, on SQLite and PostgreSQL (bench/report_scale.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    Select,
    TextClause,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from auditd.inventory.inventory import EXISTS, QUARANTINED
from auditd.inventory.rbd_facts import RBD_IMAGE, RBD_POOL
from auditd.report.applications import applications
from auditd.sources.kube.health import AUDIT_STREAM, AUDITD_ITSELF
from auditd.sources.kube.kinds import PV
from auditd.store import episode_steps
from auditd.store.models import (
    IMAGE_CLASS,
    IMAGE_CLASS_INDEX,
    EpisodeRow,
    LagDayRow,
    MeasurementRow,
    NotificationRow,
    ObjectRow,
    StreamHealthRow,
    TransitionRow,
    UTCDateTime,
    ViolationRow,
)

SEVERITIES = ("critical", "warning", "info")
HEALTHY = "healthy"  # the image class (sources/rbd/parse.py: classify) that counts as healthy
# The daemon rewrites stream_health every 5 s: three missed samples and it is not running.
HEARTBEAT_STALE = timedelta(seconds=15)


@dataclass(frozen=True)
class Filters:
    """What the SRE narrowed the report to. ``clusters``/``pools``: the pair's, from config."""

    pair: str | None = None
    namespace: str | None = None
    rule: str | None = None
    clusters: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str | None]:
        return {"pair": self.pair, "namespace": self.namespace, "rule": self.rule}


@dataclass
class ReportData:
    since: datetime
    until: datetime
    filters: Filters
    summary: dict[str, Any]
    open_incidents: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    episodes: list[dict[str, Any]]
    blind_spots: list[dict[str, Any]]
    delivery: dict[str, Any]
    transitions: list[dict[str, Any]]
    transitions_total: int
    notes: list[str] = field(default_factory=list)
    applications: list[dict[str, Any]] = field(default_factory=list)  # Ramen's, if any


def iso_utc(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def parse_iso(iso: str) -> datetime:
    """The inverse of iso_utc, for renderers that do time arithmetic on a report's fields."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _at(t: datetime) -> ColumnElement[datetime]:
    """A bound time, converted like every stored time (naive UTC text on SQLite)."""
    return literal(t, UTCDateTime())


def seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    """end - start in seconds, in SQL (each backend has its own date arithmetic)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def load_report(
    session: Session,
    since: datetime,
    until: datetime,
    filters: Filters | None = None,
    limit: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> ReportData:
    f = filters or Filters()
    step = progress or (lambda _what: None)
    notes = []
    if f.pair and not f.clusters:
        notes.append(
            f"--pair {f.pair}: without the config, only incidents and episodes are filtered "
            "by pair (pass -c to filter clusters and volumes too)"
        )
    step("summary")
    summary = _summary(session, since, until, f)
    step("incidents")
    open_now, violations = _violations(session, since, until, f, limit)
    step("volumes")
    volumes = _volumes(session, since, until, f)
    step("episodes")
    episodes = _episodes(session, since, until, f)
    step("applications")
    apps = applications(
        session,
        since,
        until,
        lambda: (_volume_labels(session), _worst_lags(session, since, until, f)),
        f.namespace,
        f.clusters,
    )
    step("blind spots")
    silent = silent_since(session, until)
    blind = _blind_spots(session, since, until, f, silent)
    if silent is not None:
        notes.append(
            f"auditd has not reported since {iso_utc(silent)}: nothing after that was "
            "seen (see audit blind spots)"
        )
    step("delivery")
    delivery = _delivery(session, since, until, f)
    step("timeline")
    transitions, total = _timeline(session, since, until, f, limit)
    return ReportData(
        since,
        until,
        f,
        summary,
        open_now,
        violations,
        volumes,
        episodes,
        blind,
        delivery,
        transitions,
        total,
        notes,
        apps,
    )


# ------------------------------------------------------------------------------- incidents


def _violation_scope(f: Filters) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = [ViolationRow.state != "inactive"]
    if f.pair:
        out.append(ViolationRow.pair == f.pair)
    if f.rule:
        out.append(ViolationRow.rule == f.rule)
    if f.namespace:
        out.append(ViolationRow.namespace == f.namespace)
    return out


def _summary(session: Session, since: datetime, until: datetime, f: Filters) -> dict[str, Any]:
    """Incidents (violations that fired) opened, resolved and open, by rule and severity."""
    fired = ViolationRow.fired_at
    resolved_in = and_(
        fired.is_not(None),
        ViolationRow.resolved_at >= _at(since),
        ViolationRow.resolved_at < _at(until),
    )
    repair = seconds_between(session, fired, ViolationRow.resolved_at)
    rows = session.execute(
        select(
            ViolationRow.rule,
            ViolationRow.severity,
            func.sum(case((and_(fired >= _at(since), fired < _at(until)), 1), else_=0)),
            func.sum(case((resolved_in, 1), else_=0)),
            func.sum(
                case(
                    (
                        and_(
                            fired < _at(until),
                            or_(
                                ViolationRow.resolved_at.is_(None),
                                ViolationRow.resolved_at >= _at(until),
                            ),
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
            func.sum(case((resolved_in, repair), else_=0.0)),
        )
        .where(
            *_violation_scope(f),
            fired.is_not(None),
            fired < _at(until),
            or_(ViolationRow.resolved_at.is_(None), ViolationRow.resolved_at >= _at(since)),
        )
        .group_by(ViolationRow.rule, ViolationRow.severity)
    ).all()

    def bucket() -> dict[str, Any]:
        return {"opened": 0, "resolved": 0, "open": 0, "_repair": 0.0}

    total = bucket()
    by_rule: dict[str, dict[str, Any]] = {}
    by_sev: dict[str, dict[str, Any]] = {}
    for rule, sev, opened, resolved, still, repair_s in rows:
        for b in (total, by_rule.setdefault(rule, bucket()), by_sev.setdefault(sev, bucket())):
            b["opened"] += int(opened or 0)
            b["resolved"] += int(resolved or 0)
            b["open"] += int(still or 0)
            b["_repair"] += float(repair_s or 0.0)

    def done(b: dict[str, Any]) -> dict[str, Any]:
        repair_total = b.pop("_repair")
        b["mttr_seconds"] = round(repair_total / b["resolved"], 1) if b["resolved"] else None
        return b

    return {
        **done(total),
        "by_rule": [{"rule": r, **done(b)} for r, b in sorted(by_rule.items())],
        "by_severity": [
            {"severity": s, **done(by_sev[s])}
            for s in sorted(by_sev, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else 9)
        ],
    }


def violation_doc(v: ViolationRow, delivery: list[str]) -> dict[str, Any]:
    return {
        "id": v.id,
        "rule": v.rule,
        "subject": v.subject,
        "pair": v.pair,
        "cluster": v.cluster,
        "namespace": v.namespace,
        "severity": v.severity,
        "state": v.state,
        "summary": v.summary,
        "first_seen": iso_utc(v.first_seen),
        "fired_at": iso_utc(v.fired_at),
        "resolved_at": iso_utc(v.resolved_at),
        "evidence": v.evidence,
        "notifications": delivery,
    }


def _violations(
    session: Session, since: datetime, until: datetime, f: Filters, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The incidents open at the end of the window, and every violation that overlaps it (the
    most recent ``limit``)."""
    scope = _violation_scope(f)
    overlapping = session.scalars(
        select(ViolationRow)
        .where(
            *scope,
            ViolationRow.first_seen < _at(until),
            or_(ViolationRow.resolved_at.is_(None), ViolationRow.resolved_at >= _at(since)),
        )
        .order_by(ViolationRow.first_seen.desc(), ViolationRow.id.desc())
        .limit(limit)
    ).all()
    vrows = list(reversed(overlapping))
    delivery = alert_delivery(session, [v.id for v in vrows])
    docs = [violation_doc(v, delivery.get(v.id, [])) for v in vrows]
    open_now = [
        d
        for d in docs
        if d["fired_at"] is not None
        and (d["resolved_at"] is None or d["resolved_at"] >= iso_utc(until))
    ]
    return open_now, docs


def alert_delivery(session: Session, violation_ids: list[int]) -> dict[int, list[str]]:
    """Per violation: event:sink:status of each alert. A grouped alert shows the status of the
    first message of its incident written after it (the one that told it)."""
    out: dict[int, list[str]] = {}
    if not violation_ids:
        return out
    alerts = session.scalars(
        select(NotificationRow)
        .where(NotificationRow.violation_id.in_(violation_ids))
        .order_by(NotificationRow.id)
    ).all()
    messages: dict[int, list[tuple[int, str]]] = {}
    groups = {n.group_id for n in alerts if n.group_id is not None}
    if groups:
        for mid, gid, status in session.execute(
            select(NotificationRow.id, NotificationRow.group_id, NotificationRow.status)
            .where(NotificationRow.group_id.in_(groups), NotificationRow.violation_id.is_(None))
            .order_by(NotificationRow.id)
        ):
            if gid is not None:
                messages.setdefault(gid, []).append((mid, status))
    for n in alerts:
        status = n.status
        if n.group_id is not None:
            status = next((st for mid, st in messages.get(n.group_id, []) if mid > n.id), status)
        if n.violation_id is not None:
            out.setdefault(n.violation_id, []).append(f"{n.event}:{n.sink}:{status}")
    return out


# ------------------------------------------------------------------------------- volumes


def _volume_labels(session: Session) -> dict[tuple[str, str, str], str]:
    """(cluster, pool, image) -> namespace/pvc, from the PVs auditd knows now."""
    facts = ObjectRow.facts
    out: dict[tuple[str, str, str], str] = {}
    for cluster, image, pool, claim in session.execute(
        # Three fields out of each PV's facts, extracted by the database, not decoded here.
        select(
            ObjectRow.cluster,
            facts["imageName"].as_string(),
            facts["pool"].as_string(),
            facts["claimRef"].as_string(),
        ).where(ObjectRow.kind == PV.kind)
    ):
        if image and pool and claim:
            out[(cluster, pool, image)] = claim
    return out


def _volumes(
    session: Session, since: datetime, until: datetime, f: Filters
) -> list[dict[str, Any]]:
    """Per image and cluster: the share of the window its mirror state was healthy (time-
    weighted over the state transitions; time with no known state counts as not healthy),
    and the worst replication lag sampled in the window."""
    # Three independent reads, the bulk of the report's time: side by side on PostgreSQL (the
    # driver releases the GIL while the server works).
    health, worst, labels = _concurrently(
        session,
        lambda s: _healthy_shares(s, since, until, f),
        lambda s: _worst_lags(s, since, until, f),
        _volume_labels,
    )
    claims_by_image = {(p, i): claim for (_, p, i), claim in labels.items()}
    out = []
    for key in sorted(set(health) | set(worst)):
        cluster, pool, image = key
        claim = labels.get(key) or claims_by_image.get((pool, image))
        if f.namespace and (claim is None or claim.split("/", 1)[0] != f.namespace):
            continue
        out.append(
            {
                "cluster": cluster,
                "pool": pool,
                "image": image,
                "volume": claim,
                "healthy_share": health.get(key, {}).get("healthy_share", 0.0),
                "worst_lag_seconds": _round(worst.get(key)),
            }
        )
    # Worst first: what a reader should look at.
    out.sort(key=lambda v: (v["healthy_share"], -(v["worst_lag_seconds"] or 0)))
    return out


ImageKey = tuple[str, str, str]  # cluster, pool, image


def _healthy_shares(
    session: Session, since: datetime, until: datetime, f: Filters
) -> dict[ImageKey, dict[str, Any]]:
    """Each image's healthy seconds in the window, in one pass over its class changes.

    The changes arrive in (observed_at, id) order, read from an index that holds them in that
    order with every column asked for (ix_transitions_image_class: no sort, no row lookups),
    and each closes the segment its image was in since the one before. SQL's window function (lead() over each image) had to sort them all, and over a
    month of 10,000 volumes that sort was most of the report (bench/report_scale.py).

    An image gone from its pool's listing is recorded as a deletion only (no class change):
    from then until a class is recorded again it is nothing, never healthy.
    """
    t = TransitionRow
    scope: list[ColumnElement[bool]] = [t.kind == RBD_IMAGE]
    if f.clusters:
        scope.append(t.cluster.in_(f.clusters))
    if f.pools:
        scope.append(t.namespace.in_(f.pools))
    in_window = (t.observed_at >= _at(since), t.observed_at < _at(until))
    # Seconds into the window computed by the database, and rows read below the ORM: a
    # datetime per row, converted in Python, cost more than the rest of the pass.
    offset = cast(seconds_between(session, _at(since), t.observed_at), Float)
    conn = session.connection()
    # Deletions are few: read first, and taken in turn between the changes, by (time, id).
    deletions = conn.execute(
        select(offset, t.id, t.cluster, t.namespace, t.name)
        .where(*scope, t.field == EXISTS, t.new == "false", *in_window)
        .order_by(t.observed_at, t.id)
    ).all()
    changes = conn.execute(
        _class_changes(session, since, until, f).execution_options(
            stream_results=True, yield_per=10_000
        )
    )
    window = max((until - since).total_seconds(), 1e-9)
    # Per image: [its class (None once it is gone), since when (seconds into the window),
    # healthy seconds so far]. One dict lookup a change: this loop is most of a long window.
    images: dict[ImageKey, list[Any]] = {}
    # Images whose first event in the window is their deletion: seconds until it.
    gone_first: dict[ImageKey, float] = {}

    def gone(deletion: Sequence[Any]) -> None:  # (at, id, cluster, pool, image)
        at, _, cluster, pool, image = deletion
        key = (cluster, pool, image)
        entry = images.get(key)
        if entry is None:
            gone_first[key] = at
            images[key] = [None, at, 0.0]
            return
        if entry[0] == HEALTHY:
            entry[2] += at - entry[1]
        entry[0], entry[1] = None, at

    pending = iter(deletions)
    deletion = next(pending, None)
    for rows in changes.partitions():
        for at, id_, cluster, pool, image, old, new in rows:
            while deletion is not None and (
                deletion[0] < at or (deletion[0] == at and deletion[1] < id_)
            ):
                gone(deletion)
                deletion = next(pending, None)
            key = (cluster, pool, image)
            entry = images.get(key)
            if entry is None:
                # An image's first change in the window says what it was when the window opened.
                images[key] = [new, at, at if old == HEALTHY else 0.0]
                continue
            if entry[0] == HEALTHY:
                entry[2] += at - entry[1]
            entry[0], entry[1] = new, at
    for rest in (deletion, *pending) if deletion is not None else ():
        gone(rest)
    for key, cls in _class_before(session, gone_first, since).items():
        if cls == HEALTHY:
            images[key][2] += gone_first[key]
    # Images that did not change in the window were all of it as their first change after it
    # says they were before it, or, if none, as they are now (the objects table).
    for key, cls in _opening_unchanged(session, until, scope, f, skip=images.keys()).items():
        images[key] = [cls, 0.0, 0.0]
    return {
        key: {
            "healthy_share": round(
                min(1.0, (seconds + (window - start if cls == HEALTHY else 0.0)) / window), 4
            )
        }
        for key, (cls, start, seconds) in images.items()
    }


def _class_changes(session: Session, since: datetime, until: datetime, f: Filters) -> Select[Any]:
    """The window's image class changes (seconds into the window, id, cluster, pool, image,
    old, new) in (time, id) order, from ix_transitions_image_class alone: no row lookups, no
    sort. SQLite is told so by name: its statistics average over every kind and field, so its
    planner took (kind, field, observed_at) for the more selective index and read the row of
    every change, 2.4x the time over a month of 10,000 volumes (bench/report_scale.py). The
    columns are named bare, for a FROM that names the index; kind and field are spelled out
    (IMAGE_CLASS), the index's own predicate: SQLite uses a partial index only for a query
    that implies it, and bound values never do."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    source = (
        text(f"transitions INDEXED BY {IMAGE_CLASS_INDEX}") if sqlite else TransitionRow.__table__
    )
    at = column("observed_at", UTCDateTime())
    scope: list[ColumnElement[bool] | TextClause] = [IMAGE_CLASS, at >= _at(since), at < _at(until)]
    if f.clusters:
        scope.append(column("cluster").in_(f.clusters))
    if f.pools:
        scope.append(column("namespace").in_(f.pools))
    offset = cast(seconds_between(session, _at(since), at), Float)
    names = ("id", "cluster", "namespace", "name", "old", "new")
    return (
        select(offset, *(column(n) for n in names))
        .select_from(source)
        .where(*scope)
        .order_by(at, column("id"))
    )


def _class_before(
    session: Session, keys: Collection[ImageKey], when: datetime
) -> dict[ImageKey, str | None]:
    """Each image's last recorded class before ``when``: one index seek per image, one
    statement compiled once (images deleted in a window without a change before: a few a day,
    thousands where volumes churn)."""
    t = TransitionRow
    # Kind and field spelled out, not bound: PostgreSQL's generic plan for a statement run
    # thousands of times (psycopg prepares it after five) can use a partial index only when
    # the query itself implies the index's predicate (ix_transitions_image_class_by_image).
    last = (
        select(t.new)
        .where(
            IMAGE_CLASS, t.cluster == bindparam("c"), t.namespace == bindparam("p"),
            t.name == bindparam("i"), t.observed_at < _at(when),
        )
        .order_by(t.observed_at.desc(), t.id.desc())
        .limit(1)
    )  # fmt: skip
    conn = session.connection()
    return {(c, p, i): conn.execute(last, {"c": c, "p": p, "i": i}).scalar() for c, p, i in keys}


def _opening_unchanged(
    session: Session,
    until: datetime,
    scope: list[ColumnElement[bool]],
    f: Filters,
    skip: Collection[ImageKey],
) -> dict[ImageKey, str | None]:
    """The class, through the window, of each image (not in ``skip``) without a change in it."""
    t, o = TransitionRow, ObjectRow
    scope = [*scope, t.field == "class"]
    # Changes after the window only when it ended in the past: for a window up to now, none.
    # Each image's first by id (the writer writes them in time order), picked here: as a GROUP
    # BY, SQLite read every class change by image (ix_transitions_image_class_by_image, no
    # sort) however few came after the window's end (0.39 -> 0.63 s over report_scale's
    # 300,000 transitions); this reads only those, through the (kind, field, observed_at) index.
    conn = session.connection()  # rows below the ORM: 20,000 images at 10,000 volumes
    first: dict[ImageKey, tuple[int, str | None]] = {}
    for id_, cluster, pool, image, old in conn.execute(
        select(t.id, t.cluster, t.namespace, t.name, t.old).where(
            *scope, t.observed_at >= _at(until)
        )
    ):
        key = (cluster, pool, image)
        if key not in skip and (key not in first or id_ < first[key][0]):
            first[key] = (id_, old)
    out: dict[ImageKey, str | None] = {key: old for key, (_, old) in first.items()}
    known = [o.kind == RBD_IMAGE]
    if f.clusters:
        known.append(o.cluster.in_(f.clusters))
    if f.pools:
        known.append(o.namespace.in_(f.pools))
    for cluster, pool, image, cls in conn.execute(
        select(o.cluster, o.namespace, o.name, o.facts["class"].as_string()).where(*known)
    ):
        key = (cluster, pool, image)
        if key not in skip and key not in out:
            out[key] = cls
    return out


def _worst_lags(
    session: Session, since: datetime, until: datetime, f: Filters
) -> dict[tuple[str, str, str], float | None]:
    """Each image's worst sampled lag in the window (None: sampled, never known). The days
    wholly in it from each image's worst of the day (LagDayRow), the part days at either end
    from their samples: a month's window read every sample kept (3.4M at 10,000 images)."""
    first = _midnight(since) + (timedelta(days=1) if _midnight(since) < since else timedelta())
    last = _midnight(until)
    m, d = MeasurementRow.__table__, LagDayRow.__table__
    if first >= last:  # no whole day in it: a day's window, read from the samples alone
        return _worst_in(session, m, m.c.at, m.c.lag_seconds, since, until, f)
    parts = [
        _worst_in(session, m, m.c.at, m.c.lag_seconds, since, first, f),
        _worst_in(session, d, d.c.day, d.c.worst_lag_seconds, first, last, f),
        _worst_in(session, m, m.c.at, m.c.lag_seconds, last, until, f),
    ]
    out: dict[tuple[str, str, str], float | None] = {}
    for part in parts:
        for key, lag in part.items():
            held = out.get(key)
            out[key] = lag if held is None or (lag is not None and lag > held) else held
    return out


def _midnight(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


def _worst_in(
    session: Session,
    table: Any,  # a model's __table__ (typed as a FromClause by SQLAlchemy)
    at: ColumnElement[datetime],
    lag: ColumnElement[float | None],
    since: datetime,
    until: datetime,
    f: Filters,
) -> dict[tuple[str, str, str], float | None]:
    """The largest ``lag`` of each image over the rows ``at`` [since, until) (samples, or days
    by their start)."""
    if since >= until:
        return {}
    scope = [at >= _at(since), at < _at(until)]
    if f.clusters:
        scope.append(table.c.cluster.in_(f.clusters))
    if f.pools:
        scope.append(table.c.pool.in_(f.pools))
    key = (table.c.cluster, table.c.pool, table.c.image)
    return {
        (c, p, i): worst
        for c, p, i, worst in session.execute(
            select(*key, func.max(lag)).where(*scope).group_by(*key)
        )
    }


def _concurrently(session: Session, *reads: Callable[[Session], Any]) -> list[Any]:
    """Run reads at once on PostgreSQL, the first on ``session``, each other on a session of
    its own. On SQLite one after another, on ``session``: a new connection starts with an
    empty page cache, and its reads cost about what running beside the others saves. Over
    bench/report_scale.py's 1M transitions (2026-12-06) the three reads took 0.44-0.50 s at
    once and 0.31-0.37 s in turn with another process busy beside them; the whole `auditd
    report` process was the same either way on a quiet machine (0.91-0.94 s)."""
    engine = session.get_bind()
    if not isinstance(engine, Engine) or engine.dialect.name == "sqlite":
        return [read(session) for read in reads]

    def own(read: Callable[[Session], Any]) -> Any:
        with Session(engine) as s:
            return read(s)

    with ThreadPoolExecutor(len(reads) - 1, thread_name_prefix="report") as pool:
        others = [pool.submit(own, read) for read in reads[1:]]
        first = reads[0](session)
        return [first, *(o.result() for o in others)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------------- episodes


def _episodes(
    session: Session, since: datetime, until: datetime, f: Filters
) -> list[dict[str, Any]]:
    e = EpisodeRow
    scope: list[ColumnElement[bool]] = [
        e.started_at < _at(until),
        or_(e.ended_at.is_(None), e.ended_at >= _at(since)),
    ]
    if f.pair:
        scope.append(e.pair == f.pair)
    rows = session.scalars(select(e).where(*scope).order_by(e.started_at, e.id).limit(500)).all()
    labels = _volume_labels(session) if f.namespace else {}
    claims = {(p, i): c for (_, p, i), c in labels.items()}
    out = []
    for r in rows:
        if f.namespace and (claims.get((r.pool, r.image)) or "").split("/", 1)[0] != f.namespace:
            continue
        out.append(episode_doc(r))
    return out


def episode_doc(r: EpisodeRow) -> dict[str, Any]:
    return {
        "pair": r.pair,
        "pool": r.pool,
        "image": r.image,
        "trigger": r.trigger,
        "from_cluster": r.from_cluster,
        "to_cluster": r.to_cluster,
        "started_at": iso_utc(r.started_at),
        "ended_at": iso_utc(r.ended_at),
        "rto_seconds": r.rto_seconds,
        "steps": [
            {"at": iso_utc(at), "what": what} for at, what in episode_steps.from_json(r.steps).steps
        ],
    }


# ------------------------------------------------------------------------------- blind spots


# What makes auditd blind, as (kind, field) of its transitions: a watch stream's state, a pool's
# probe, and an object it could not take in (a blind spot of one object).
_BLINDING = ((AUDIT_STREAM, "state"), (RBD_POOL, "probe"), (QUARANTINED, EXISTS))


def _blind_spots(
    session: Session,
    since: datetime,
    until: datetime,
    f: Filters,
    silent_since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Intervals when auditd could not see: a watch stream blind, a Ceph probe failing,
    auditd not running; ``silent_since``: its last heartbeat, if it is not running now."""
    t = TransitionRow
    # Few rows (streams and pools change state rarely): the intervals are built here. Each
    # (kind, field) is read as its own range of the (kind, field, observed_at) index, the window
    # and each subject's last state before it: written as one OR, the planners (SQLite's at
    # least) walked every transition before ``until``, 6-10 s over a year of history.
    parts = []
    for kind, field_ in _BLINDING:
        this = [t.kind == kind, t.field == field_]
        if f.clusters:
            this.append(t.cluster.in_(f.clusters))
        last_before = (
            select(func.max(t.id))
            .where(*this, t.observed_at < _at(since))
            .group_by(t.cluster, t.namespace, t.name)
        )
        columns = (t.id, t.cluster, t.kind, t.namespace, t.name, t.new, t.observed_at)
        parts.append(
            select(*columns).where(*this, t.observed_at >= _at(since), t.observed_at < _at(until))
        )
        parts.append(select(*columns).where(t.id.in_(last_before)))
    read = union_all(*parts).subquery()
    rows = session.execute(
        select(
            read.c.cluster,
            read.c.kind,
            read.c.namespace,
            read.c.name,
            read.c.new,
            read.c.observed_at,
        ).order_by(read.c.observed_at, read.c.id)
    ).all()
    open_: dict[tuple[str, str, str, str], tuple[datetime, str]] = {}
    out: list[dict[str, Any]] = []

    def close(key: tuple[str, str, str, str], end: datetime | None) -> None:
        start, state = open_.pop(key)
        start = max(start, since)
        stop = min(end, until) if end else None
        out.append(
            {
                "cluster": key[0],
                "what": (
                    "auditd not running"
                    if key[1] == AUDIT_STREAM and key[3] == AUDITD_ITSELF
                    else f"watch {key[3]}"
                    if key[1] == AUDIT_STREAM
                    else f"object {key[3]}"
                    if key[1] == QUARANTINED
                    else f"rbd probe {key[3]}"
                ),
                "state": state,
                "started_at": iso_utc(start),
                "ended_at": iso_utc(stop),
                "seconds": round(((stop or until) - start).total_seconds(), 1),
            }
        )

    for cluster, kind, ns, name, new, at in rows:
        key = (cluster, kind, ns, name)
        state = ("quarantined" if new == "true" else None) if kind == QUARANTINED else new
        # "absent" is a CRD that is not installed: nothing to see, not a blind spot. Neither
        # is "listing", a start's first list: verdicts wait for it, but it misses nothing (what
        # changed before it is found by it, late); one that hangs turns blind.
        bad = state not in ("ok", "absent", "listing", None)
        if key in open_ and not bad:
            close(key, at)
        elif bad and key not in open_:
            open_[key] = (at, str(state))
    for key in list(open_):
        close(key, None)
    # Not running now (no heartbeat lately): everything after its last one is unseen. The
    # next start records it as history; until then the report must not read it as quiet.
    if silent_since is not None:
        clusters = session.scalars(select(StreamHealthRow.cluster).distinct()).all()
        start = max(silent_since, since)
        for cluster in sorted(c for c in clusters if not f.clusters or c in f.clusters):
            out.append(
                {
                    "cluster": cluster,
                    "what": "auditd not running",
                    "state": "down",
                    "started_at": iso_utc(start),
                    "ended_at": None,
                    "seconds": round((until - start).total_seconds(), 1),
                }
            )
    out.sort(key=lambda b: (b["started_at"] or "", b["cluster"], b["what"]))
    return out


def silent_since(session: Session, until: datetime) -> datetime | None:
    """The daemon's last heartbeat (it reports its streams' health every 5 s), if it has been
    silent since for longer than HEARTBEAT_STALE before ``until``; else None."""
    last = session.scalar(select(func.max(StreamHealthRow.reported_at)))
    return last if last is not None and last + HEARTBEAT_STALE < until else None


# ------------------------------------------------------------------------------- delivery


def _delivery(session: Session, since: datetime, until: datetime, f: Filters) -> dict[str, Any]:
    """Alerts (one per violation change) and messages (what reached a sink), by status."""
    n = NotificationRow
    scope: list[ColumnElement[bool]] = [n.created_at >= _at(since), n.created_at < _at(until)]
    kind = case((n.violation_id.is_(None), "messages"), else_="alerts")
    out: dict[str, Any] = {"alerts": {}, "messages": {}, "retried": 0, "dead_letters": []}
    for what, status, count, retried in session.execute(
        select(kind, n.status, func.count(), func.sum(case((n.attempts > 1, 1), else_=0)))
        .where(*scope)
        .group_by(kind, n.status)
    ):
        out[what][status] = int(count)
        out["retried"] += int(retried or 0)
    for row in session.execute(
        select(n.id, n.sink, n.event, n.attempts, n.last_error, n.created_at)
        .where(*scope, n.status == "dead")
        .order_by(n.id.desc())
        .limit(20)
    ):
        out["dead_letters"].append(
            {
                "id": row.id,
                "sink": row.sink,
                "event": row.event,
                "attempts": row.attempts,
                "error": row.last_error,
                "created_at": iso_utc(row.created_at),
            }
        )
    return out


# ------------------------------------------------------------------------------- timeline


def _timeline(
    session: Session, since: datetime, until: datetime, f: Filters, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The last ``limit`` transitions of the window, oldest first, and how many there were."""
    t = TransitionRow
    scope: list[ColumnElement[bool]] = [t.observed_at >= _at(since), t.observed_at < _at(until)]
    if f.clusters:
        scope.append(t.cluster.in_(f.clusters))
    if f.namespace:
        scope.append(t.namespace == f.namespace)
    total = int(session.scalar(select(func.count()).select_from(t).where(*scope)) or 0)
    rows = session.scalars(
        select(t).where(*scope).order_by(t.observed_at.desc(), t.id.desc()).limit(limit)
    ).all()
    return [transition_doc(r) for r in reversed(rows)], total


def transition_doc(r: TransitionRow) -> dict[str, Any]:
    return {
        "observed_at": iso_utc(r.observed_at),
        "cluster": r.cluster,
        "kind": r.kind,
        "namespace": r.namespace,
        "name": r.name,
        "field": r.field,
        "old": r.old,
        "new": r.new,
        "source": r.source,
        "late": r.late,
    }
