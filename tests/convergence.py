"""A fault-convergence harness (issue 20): a DR pair's world, a workload, one fault, and the
real writer (ingest, rules, lifecycle, store) judging it, compared with a fresh start.

The world is two clusters' PVC/PV/VR and two Ceph sites' `rbd mirror pool status --verbose`
built from the real healthy capture (tests/data/rbd/healthy), one image entry per volume, its
records rewritten every 30 s on the site's own clock and the secondary's synced snapshot on the
primary's (as rbd-mirror reports it). Time is a ManualClock; the database is real (SQLite or
PostgreSQL) and so is every fault's effect on it.

Faults: a cluster's streams blind then back (events withheld, then a relist), a watch that
expires (events withheld seconds, then a relist), a probe failing then succeeding, a site's
clock jumping an hour, a restart (auditd down for the fault's length, nothing seen or judged;
then memory from the history, its downtime, a first list of both clusters, and its first probes
a step later), the database down (writes refused, the writer waiting), and the database
session lost (PostgreSQL: the leader's session terminated, so the fence refuses the commit in
flight and memory is reloaded from the history).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select, text

from auditd.clock import ManualClock
from auditd.config import Config, parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Downtime, HealthReport, Item, Tick
from auditd.daemon.leader import Leadership, PgLeadership
from auditd.daemon.scopes import Scopes
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sim.story import SimEvents
from auditd.sources.kube.events import (
    ObjectEvent,
    Observed,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.sources.kube.health import StreamHealth
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.sources.rbd.transport import ProbeFailure
from auditd.store.db import make_engine, session_factory
from auditd.store.load import load_state
from auditd.store.migrate import upgrade
from auditd.store.models import ViolationRow

HEALTHY = Path(__file__).parent / "data" / "rbd" / "healthy"
START = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
CLUSTERS = ("dr1", "dr2")
KINDS = ("PersistentVolumeClaim", "PersistentVolume", "VolumeReplication")
NS = "app"
INTERVAL = timedelta(seconds=30)  # probes
STEP = timedelta(seconds=5)  # ticks and health reports
FOR = timedelta(seconds=20)  # every rule with a for-duration, shortened alike
# A fault-free world judged for this long reaches every verdict it will: the longest `for`,
# two probe intervals and a rewrite.
SETTLE = FOR + 2 * INTERVAL + timedelta(seconds=30)
# Rules about auditd's own sight: a fault may raise them, a fault-free run never does.
ABOUT_THE_FAULT = {"audit-blind-spot", "ceph-clock-skew"}
FAULTS = ("blind", "expiry", "probe", "clock", "restart", "db-down", "session")
OPS = ("create", "drop-vr", "add-vr", "stray", "unstray", "stall", "unstall", "both", "heal")


def config() -> Config:
    shortened = {
        rule: {"for": f"{int(FOR.total_seconds())}s"}
        for rule in (
            "k8s-objects-on-both",
            "secondary-not-replaying",
            "primary-not-stopped",
            "image-missing-on-peer",
            "image-not-mirrored",
            "lag-disagreement",
            "vr-degraded",
            "unprotected-volume",
            "pool-mirroring-unhealthy",
            "ceph-clock-skew",
        )
    }
    return parse_config(
        {
            "clusters": [
                {"name": "dr1", "role": "primary", "ceph": {"conf": "/dev/null"}},
                {"name": "dr2", "role": "secondary", "ceph": {"conf": "/dev/null"}},
            ],
            "pairs": [{"name": "p", "clusters": list(CLUSTERS), "pools": ["replicapool"]}],
            "watch": {"stale_after": "10s", "blind_spot_after": "20s"},
            "probe": {"interval": "30s", "blind_after": "45s"},
            "rules": shortened,
        }
    )


# ----------------------------------------------------------------------------- the world


@dataclass
class Volume:
    name: str
    primary: str = "dr1"
    vr: bool = True
    stray: bool = False  # a PVC on the secondary, bound to the replica
    stalled_at: datetime | None = None
    both_primary: bool = False


@dataclass
class World:
    """What is true: the clusters' objects and the Ceph sites' state. Pure data."""

    volumes: dict[str, Volume] = field(default_factory=dict)
    offsets: dict[str, timedelta] = field(
        default_factory=lambda: dict.fromkeys(CLUSTERS, timedelta())
    )

    def apply(self, op: str, name: str, at: datetime) -> None:
        v = self.volumes.get(name)
        if op == "create" and v is None:
            self.volumes[name] = Volume(name)
        elif v is None:
            return
        elif op in ("drop-vr", "add-vr"):
            v.vr = op == "add-vr"
        elif op in ("stray", "unstray"):
            v.stray = op == "stray"
        elif op == "stall" and v.stalled_at is None:
            v.stalled_at = at
        elif op == "unstall":
            v.stalled_at = None
        elif op in ("both", "heal"):
            v.both_primary = op == "both"

    def objects(self, cluster: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(kind, name) -> the object, as the API server holds it now."""
        out: dict[tuple[str, str], dict[str, Any]] = {
            ("VolumeReplicationClass", "rbd-volumereplicationclass"): objects.vrc()
        }
        for v in self.volumes.values():
            pv = f"pv-{cluster}-{v.name}"
            if cluster == v.primary or v.stray:
                out[("PersistentVolumeClaim", v.name)] = objects.pvc(v.name, NS, volume=pv)
                out[("PersistentVolume", pv)] = objects.pv(pv, NS, v.name, v.name)
            if cluster == v.primary and v.vr:
                out[("VolumeReplication", v.name)] = objects.vr(v.name, NS, v.name)
        return out

    def status(self, cluster: str, at: datetime) -> str:
        """`rbd mirror pool status --verbose` of ``cluster``'s site at auditd time ``at``."""
        site_now = at + self.offsets[cluster]
        rewritten = site_now - timedelta(seconds=(at - START).total_seconds() % 30 + 2)
        images = []
        for v in sorted(self.volumes.values(), key=lambda v: v.name):
            primary = cluster == v.primary or v.both_primary
            entry = copy.deepcopy(_TEMPLATE["primary" if primary else "secondary"])
            entry["name"] = v.name
            entry["global_id"] = f"gid-{v.name}"
            entry["last_update"] = rewritten.strftime("%Y-%m-%d %H:%M:%S")
            for peer in entry.get("peer_sites", []):
                peer["last_update"] = entry["last_update"]
            if not primary:
                synced = at.replace(second=0, microsecond=0) - timedelta(seconds=20)
                if v.stalled_at is not None:
                    synced = min(synced, v.stalled_at)
                taken = int((synced + self.offsets[v.primary]).timestamp())
                info = {
                    "bytes_per_second": 0.0,
                    "local_snapshot_timestamp": taken,
                    "remote_snapshot_timestamp": taken,
                    "replay_state": "idle",
                }
                entry["description"] = "replaying, " + json.dumps(info)
            images.append(entry)
        doc = copy.deepcopy(_TEMPLATE["pool"])
        doc["images"] = images
        return json.dumps(doc)


def _template() -> dict[str, Any]:
    a = json.loads((HEALTHY / "site-a-mirror-pool-status-verbose.json").read_text())
    b = json.loads((HEALTHY / "site-b-mirror-pool-status-verbose.json").read_text())
    pool = {k: v for k, v in a.items() if k != "images"}
    pool["summary"] = {**pool["summary"], "states": {}}
    return {"pool": pool, "primary": a["images"][0], "secondary": b["images"][0]}


_TEMPLATE = _template()


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Fault:
    kind: str
    cluster: str
    at: datetime
    lasting: timedelta
    ahead: bool = True  # a clock jump's direction

    def active(self, now: datetime) -> bool:
        return self.at <= now < self.at + self.lasting


Workload = list[tuple[datetime, str, str]]  # (when, op, volume)


class Daemon:
    """The writer as `auditd run` assembles it, fed what its watchers and probers would see."""

    def __init__(self, url: str, clock: ManualClock, leadership: Leadership | None = None) -> None:
        upgrade(url)
        self.url = url
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.config = config()
        self.clock = clock
        self.leadership = leadership
        if leadership is not None:
            leadership.fence(self.sessions)
        # Probes the rules asked for: the scheduler runs them at the next step (on_demand_gap).
        self.wanted: set[tuple[str, str]] = set()
        self.listed_at: dict[str, datetime] = {}  # each cluster's last complete list
        self.ingest = self._writer(Inventory(), RuleEngine(self.config), {})
        self.sim = SimEvents()
        self.seen: dict[str, dict[tuple[str, str], dict[str, Any]]] = {c: {} for c in CLUSTERS}

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.engine.dispose()  # its PostgreSQL sessions, not left to the garbage collector

    def _writer(self, inventory: Inventory, engine: RuleEngine, active: dict[Any, Any]) -> Ingestor:
        return Ingestor(
            self.sessions, inventory, engine, active, ["slack"], clock=self.clock,
            leadership=self.leadership, want_probes=self.wanted.update,
        )  # fmt: skip

    def restart(self) -> None:
        with self.sessions() as s:
            inventory, engine, active = load_state(s, self.config)
        self.ingest = self._writer(inventory, engine, active)

    def list_all(self, cluster: str, world: World, source: str, now: datetime) -> list[Item]:
        """A complete list of every kind (a first list, or a relist after losing the watch)."""
        items: list[Item] = []
        current = world.objects(cluster)
        for kind in (*KINDS, "VolumeReplicationClass"):
            found = [
                _observed(self.sim, cluster, k, obj)
                for (k, _), obj in sorted(current.items(), key=lambda x: x[0])
                if k == kind
            ]
            items += [
                SnapshotStart(cluster, kind, source, now),  # type: ignore[arg-type]
                SnapshotPage(cluster, kind, found, source, now),  # type: ignore[arg-type]
                SnapshotEnd(cluster, kind, str(self.sim.rv), source, now),  # type: ignore[arg-type]
            ]
        self.seen[cluster] = current
        self.listed_at[cluster] = now
        return items

    def events(self, cluster: str, world: World, now: datetime) -> list[Item]:
        """The watch events between what this daemon saw last and the world now."""
        current, seen = world.objects(cluster), self.seen[cluster]
        out: list[Item] = []
        for key in sorted(set(current) | set(seen)):
            kind = key[0]
            if key not in current:
                out.append(self.sim.event(cluster, kind, seen[key], "DELETED", now))
            elif key not in seen:
                out.append(self.sim.event(cluster, kind, current[key], "ADDED", now))
            elif current[key] != seen[key]:
                out.append(self.sim.event(cluster, kind, current[key], "MODIFIED", now))
        self.seen[cluster] = current
        return out

    def open(self) -> set[tuple[str, str, str]]:
        return {(k[0], k[1], v.state) for k, v in self.ingest.active.items()}

    def fired(self) -> set[tuple[str, str]]:
        with self.sessions() as s:
            rows = s.scalars(select(ViolationRow).where(ViolationRow.fired_at.is_not(None)))
            return {(v.rule, v.subject) for v in rows}

    def stored_open(self) -> set[tuple[str, str, str]]:
        with self.sessions() as s:
            rows = s.scalars(
                select(ViolationRow).where(ViolationRow.state.in_(["pending", "firing"]))
            )
            return {(v.rule, v.subject, v.state) for v in rows}


def _observed(sim: SimEvents, cluster: str, kind: str, obj: dict[str, Any]) -> Observed:
    event = sim.event(cluster, kind, obj, "ADDED", START)
    assert isinstance(event, ObjectEvent)
    return event.object


@dataclass
class Outcome:
    running_open: set[tuple[str, str, str]]
    fresh_open: set[tuple[str, str, str]]
    fired: set[tuple[str, str]]
    reference_fired: set[tuple[str, str]]


def drive(
    daemon: Daemon,
    world: World,
    until: datetime,
    workload: Workload | None = None,
    fault: Fault | None = None,
    on_fault: Callable[[Daemon, Fault], None] | None = None,
) -> None:
    """Run the daemon over the world from the clock's now to ``until``: ops at their times,
    the fault's effects while it lasts, a probe every INTERVAL, ticks and health every STEP."""
    pending = sorted(workload or [])
    clock = daemon.clock
    started = clock.now()
    if not any(daemon.seen.values()):
        first = [i for c in CLUSTERS for i in daemon.list_all(c, world, "list", started)]
        daemon.ingest.write(first)
    missed: set[str] = set()  # clusters whose watch lost events: relisted when it is back
    starting: set[tuple[str, str]] = set()  # a restart's first probes, run at the next step
    hit = False
    while clock.now() <= until:
        now = clock.now()
        while pending and pending[0][0] <= now:
            _, op, name = pending.pop(0)
            world.apply(op, name, now)
        batch: list[Item] = []
        active = fault is not None and fault.active(now)
        if fault is not None and fault.kind == "restart":
            if active:
                clock.advance(STEP)  # auditd is not running: nothing is seen, nothing judged
                continue
            if not hit and now >= fault.at:
                # It starts as `auditd run` does: the state it stored, its downtime, a first
                # list of every kind; its first probes answer a step later (rbd takes seconds).
                hit = True
                daemon.restart()
                batch.append(Downtime(list(CLUSTERS), fault.at, now))
                missed |= set(CLUSTERS)
                starting = {(c, "replicapool") for c in CLUSTERS}
        elif fault is not None and active and (not hit or fault.kind == "session"):
            # Sessions are lost again and again while the fault lasts (the workload
            # lost them five times); every other fault happens once.
            hit = True
            if fault.kind == "clock":
                world.offsets[fault.cluster] = timedelta(hours=1 if fault.ahead else -1)
            if on_fault is not None:
                on_fault(daemon, fault)
        for cluster in CLUSTERS:
            withheld = (
                active
                and fault is not None
                and fault.cluster == cluster
                and fault.kind in ("blind", "expiry")
            )
            if withheld:
                missed.add(cluster)
            elif cluster in missed:
                missed.discard(cluster)
                source = "list" if fault is not None and fault.kind == "restart" else "relist"
                batch += daemon.list_all(cluster, world, source, now)
            else:
                batch += daemon.events(cluster, world, now)
        asked = {c for c, _ in daemon.wanted}
        daemon.wanted.clear()
        for cluster in CLUSTERS:
            if cluster in asked or (now - START) % INTERVAL == timedelta(0):
                failing = (
                    active
                    and fault is not None
                    and fault.kind == "probe"
                    and fault.cluster == cluster
                )
                batch.append(_probe(world, cluster, now, failing))
        batch.append(_health(clock, now, fault if active else None, daemon.listed_at))
        batch.append(Tick(now))
        daemon.ingest.write(batch)
        daemon.wanted |= starting
        starting = set()
        clock.advance(STEP)


def _probe(world: World, cluster: str, now: datetime, failing: bool) -> ProbeResult:
    if failing:
        failure = ProbeFailure("timeout", "rbd did not answer in 20s")
        return ProbeResult(cluster, "replicapool", "status", now, 20.0, failure=failure)
    status = parse_pool_status(world.status(cluster, now))
    return ProbeResult(cluster, "replicapool", "status", now, 0.1, status=status)


def _health(
    clock: ManualClock, now: datetime, fault: Fault | None, listed_at: dict[str, datetime]
) -> HealthReport:
    streams = []
    for cluster in CLUSTERS:
        for kind in KINDS:
            h = StreamHealth(cluster, kind, connected=True, synced=True, _clock=clock)
            h.last_list_at = listed_at.get(cluster)
            if fault is not None and fault.cluster == cluster and fault.kind == "blind":
                h.connected, h.disconnected_since = False, fault.at
            streams.append(h.snapshot())
    return HealthReport(now, streams)


# ------------------------------------------------------------------------- the faults


def hold_database(seconds: float) -> Callable[[Daemon, Fault], None]:
    """The database takes no write for ``seconds`` of real time: SQLite held by another
    writer's exclusive lock, PostgreSQL by its tables locked. The writer waits and retries."""

    def fault(daemon: Daemon, _: Fault) -> None:
        url = daemon.url
        engine = make_engine(url)
        ready = threading.Event()

        def hold() -> None:
            with engine.connect() as conn:
                if url.startswith("sqlite"):
                    conn.exec_driver_sql("BEGIN EXCLUSIVE")
                else:
                    conn.execute(text("SET lock_timeout = '5s'"))
                    conn.execute(
                        text("LOCK TABLE transitions, violations IN ACCESS EXCLUSIVE MODE")
                    )
                ready.set()
                time.sleep(seconds)
                conn.rollback()
            engine.dispose()

        threading.Thread(target=hold, daemon=True).start()
        ready.wait(10)

    return fault


def lose_session(plain_pg: str) -> Callable[[Daemon, Fault], None]:
    """PostgreSQL: terminate every session of the daemon (its leader's and its pooled ones, told
    by their application_name), as a network partition or a failover of the database does."""

    def terminate(name: str) -> None:
        import psycopg

        with psycopg.connect(plain_pg, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )

    def fault(daemon: Daemon, f: Fault) -> None:
        (name,) = parse_qs(urlsplit(daemon.url).query)["application_name"]
        if f.ahead:
            terminate(name)  # between batches
        else:
            # While the next batches are written (a commit in flight, a takeover under way).
            threading.Timer(0.05, terminate, (name,)).start()

    return fault


def tagged(url: str) -> str:
    """The URL with an application_name of its own, so that its sessions can be found."""
    return f"{url}&application_name=auditd-{uuid.uuid4().hex[:8]}"


def pg_leadership(url: str, cfg: Config) -> PgLeadership:
    lead = PgLeadership(url, Scopes.of(cfg).all, retry_every=0.2)
    lead.start()
    return lead


def run_case(
    make_url: Callable[[str], str],
    workload: Workload,
    fault: Fault,
    on_fault: Callable[[Daemon, Fault], None] | None = None,
    leadership: Callable[[str], Leadership | None] = lambda url: None,
) -> Outcome:
    """The workload with the fault; the same without it (what fired is the reference); and a
    fresh daemon started on the world as it ends, each judged for SETTLE afterwards."""
    end = max([t for t, _, _ in workload] + [fault.at + fault.lasting]) + STEP

    url = make_url("running")
    lead = leadership(url)
    world = World()
    try:
        with Daemon(url, ManualClock(START), lead) as running:
            drive(running, world, end, workload, fault, on_fault)
            fresh_start = running.clock.now()
            drive(running, world, fresh_start + SETTLE)
            running_open, fired = running.open(), running.fired()
            assert running.stored_open() == running_open, "memory ran ahead of the store"
    finally:
        if lead is not None:
            lead.stop()

    with Daemon(make_url("fresh"), ManualClock(fresh_start)) as fresh:
        drive(fresh, copy.deepcopy(world), fresh_start + SETTLE)
        fresh_open = fresh.open()

    with Daemon(make_url("reference"), ManualClock(START)) as reference:
        calm = World()
        drive(reference, calm, end, workload)
        drive(reference, calm, reference.clock.now() + SETTLE)
        reference_fired = reference.fired()
    return Outcome(running_open, fresh_open, fired, reference_fired)
