"""Replay a capture of real Ceph through the real pipeline, as a daemon probing every N s saw it.

`scripts/capture-transients.sh` records both sites' `rbd mirror pool status --verbose` about
every second through failovers, a forced promotion and a disabled image (tests/data/rbd/
transients/). A probe at time t sees each site's newest capture taken at or before t, so a replay
at any probe interval meets the stale records a real probe would have met. Kubernetes does what
Ramen does: the old primary's VR asks for secondary before the demote, and its PVC/PV/VR move to
the new primary a few seconds after the promote.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from auditd.clock import ManualClock
from auditd.config import Config, parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Downtime, HealthReport, Item, Tick
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sim.story import SimEvents
from auditd.sources.kube.events import ObjectEvent
from auditd.sources.kube.health import StreamHealth
from auditd.sources.rbd.parse import RbdParseError, parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.sources.rbd.transport import ProbeFailure
from auditd.store.db import make_engine, session_factory
from auditd.store.load import load_state
from auditd.store.migrate import upgrade
from auditd.store.models import EpisodeRow, NotificationRow, ViolationRow

TRANSIENTS = Path(__file__).parent / "data" / "rbd" / "transients"
SITE_OF = {"dr1": "site-a", "dr2": "site-b"}
CLUSTER_OF = {v: k for k, v in SITE_OF.items()}
IMAGE, NS, CLAIM = "csi-vol-0001", "app", "data"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Capture:
    """One capture directory: per site, the time-ordered status files; and the actions."""

    root: Path
    times: dict[str, list[datetime]] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    actions: list[tuple[datetime, str]] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path = TRANSIENTS) -> Capture:
        cap = cls(root)
        for line in (root / "index.tsv").read_text().splitlines():
            at, who, what = line.split("\t", 2)
            if who == "ACTION":
                cap.actions.append((parse_time(at), what))
            else:
                cap.times.setdefault(who, []).append(parse_time(at))
                cap.files.setdefault(who, []).append(what)
        return cap

    def action(self, prefix: str, after: datetime | None = None) -> datetime:
        return next(
            at
            for at, what in self.actions
            if what.startswith(prefix) and (after is None or at > after)
        )

    def status_at(self, site: str, at: datetime) -> str | None:
        i = bisect.bisect_right(self.times[site], at) - 1
        return (self.root / self.files[site][i]).read_text() if i >= 0 else None


CONFIG: dict[str, Any] = {
    "clusters": [
        {"name": "dr1", "role": "primary", "ceph": {"conf": "/dev/null"}},
        {"name": "dr2", "role": "secondary", "ceph": {"conf": "/dev/null"}},
    ],
    "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
}


class Replay:
    """The real ingest writer on SQLite, fed probes from a capture and Ramen's k8s moves."""

    def __init__(
        self,
        tmp: Path,
        capture: Capture,
        interval: float,
        sections: dict[str, Any] | None = None,
        **rules: Any,
    ) -> None:
        url = f"sqlite:///{tmp / 'h.db'}"
        upgrade(url)
        self.sessions = session_factory(make_engine(url))
        self.config: Config = parse_config({**CONFIG, **(sections or {}), "rules": rules})
        # Lost sites (since when): their API server gone, their `rbd` hanging to its timeout.
        self.lost: dict[str, datetime] = {}
        self._late: list[tuple[datetime, Item]] = []  # hung probes, reported at their timeout
        self._next_probe: datetime | None = None
        self.capture = capture
        self.interval = timedelta(seconds=interval)
        self.clock = ManualClock(min(t[0] for t in capture.times.values()))
        self.wanted: set[tuple[str, str]] = set()
        self.ingest = self._writer(Inventory(), RuleEngine(self.config), {})
        self.world = SimEvents()  # the watch events the watcher would emit
        self.images = {IMAGE}

    def restart(self, down_for: timedelta = timedelta(0)) -> None:
        """A new writer from what the last one committed, as `auditd run` starts after
        ``down_for`` without auditd: its downtime is the first thing it takes in."""
        down_at = self.clock.now()
        self.clock.advance(down_for)
        with self.sessions() as session:
            inventory, engine, active = load_state(session, self.config)
        self.ingest = self._writer(inventory, engine, active)
        up_at = self.clock.now()
        self.ingest.process([Downtime(list(SITE_OF), down_at, up_at)], up_at)

    def _writer(self, inventory: Inventory, engine: RuleEngine, active: dict[Any, Any]) -> Ingestor:
        return Ingestor(
            self.sessions,
            inventory,
            engine,
            active,
            ["slack"],
            clock=self.clock,
            want_probes=self.wanted.update,
        )

    # ---------------------------------------------------------------- kubernetes
    def classes(self) -> list[Item]:
        """The VolumeReplicationClass on both clusters: a 1m schedule, the RPO rule's base."""
        return [self.event(c, "VolumeReplicationClass", objects.vrc(), "ADDED") for c in SITE_OF]

    def event(self, cluster: str, kind: str, obj: dict[str, Any], typ: str) -> ObjectEvent:
        return self.world.event(cluster, kind, obj, typ, self.clock.now())  # type: ignore[arg-type]

    def volume(
        self, cluster: str, typ: str, image: str = IMAGE, vr_state: str = "primary"
    ) -> list[Item]:
        pv = f"pv-{cluster}-{image}"
        claim = CLAIM if image == IMAGE else f"{CLAIM}-{image}"
        return [
            self.event(cluster, "PersistentVolumeClaim", objects.pvc(claim, NS, volume=pv), typ),
            self.event(cluster, "PersistentVolume", objects.pv(pv, NS, claim, image), typ),
            self.event(cluster, "VolumeReplication", objects.vr(claim, NS, claim, vr_state), typ),
        ]

    # ---------------------------------------------------------------------- ceph
    def health(self) -> HealthReport:
        """Every stream of both clusters, as the watchers report them every 5 s."""
        streams = []
        for cluster in SITE_OF:
            for kind in ("PersistentVolumeClaim", "PersistentVolume", "VolumeReplication"):
                h = StreamHealth(cluster, kind, connected=True, synced=True, _clock=self.clock)
                if cluster in self.lost:
                    h.connected, h.disconnected_since = False, self.lost[cluster]
                streams.append(h.snapshot())
        return HealthReport(self.clock.now(), streams)

    def probes(self, clusters: set[str] | None = None) -> list[Item]:
        out: list[Item] = []
        for cluster, site in SITE_OF.items():
            if clusters is not None and cluster not in clusters:
                continue
            if cluster in self.lost:
                if any(getattr(i, "cluster", None) == cluster for _, i in self._late):
                    continue  # one probe of a pool at a time: the hung one is still running
                timeout = self.config.probe.timeout
                failure = ProbeFailure("timeout", f"rbd did not answer in {timeout}")
                hung = ProbeResult(
                    cluster, "replicapool", "status", self.clock.now(), 20.0, failure=failure
                )
                self._late.append((self.clock.now() + timeout, hung))
                continue
            text = self.capture.status_at(site, self.clock.now())
            if text is None:
                continue
            try:
                status = parse_pool_status(text)
            except RbdParseError:
                continue  # the capture's rbd call itself failed at that instant
            status = replace(status, images=[i for i in status.images if i.name in self.images])
            out.append(
                ProbeResult(cluster, "replicapool", "status", self.clock.now(), 0.1, status=status)
            )
        return out

    # ---------------------------------------------------------------------- time
    def run(self, until: datetime, k8s: list[tuple[datetime, list[Item]]]) -> None:
        """Probe every interval, tick every 5 s, apply k8s changes at their times; probes the
        rules ask for run at the next tick, at most once per on_demand_gap per site (as the
        daemon's scheduler runs them)."""
        pending = sorted(k8s, key=lambda x: x[0])
        next_probe = self._next_probe or self.clock.now()
        gap = self.config.probe.on_demand_gap
        last: dict[str, datetime] = {}
        while self.clock.now() <= until:
            now = self.clock.now()
            batch: list[Item] = []
            while pending and pending[0][0] <= now:
                batch += pending.pop(0)[1]
            batch += [item for at, item in self._late if at <= now]
            self._late = [(at, item) for at, item in self._late if at > now]
            if now >= next_probe:
                batch += self.probes()
                next_probe = now + self.interval
                last = dict.fromkeys(SITE_OF, now)
            elif self.wanted and gap:
                due = {c for c, _ in self.wanted if now - last.get(c, now - gap) >= gap}
                batch += self.probes(due)
                last.update(dict.fromkeys(due, now))
            self.wanted.clear()
            batch += [self.health(), Tick(now)]
            self.ingest.process(batch, now)
            self.clock.advance(min(timedelta(seconds=5), self.interval))
        self._next_probe = next_probe

    def steps(self, start: datetime, end: datetime, by: timedelta) -> Iterator[datetime]:
        t = start
        while t <= end:
            yield t
            t += by

    # ------------------------------------------------------------------- results
    def fired(self) -> list[tuple[str, str, str]]:
        with self.sessions() as s:
            return [
                (v.rule, v.subject, v.severity)
                for v in s.scalars(select(ViolationRow).where(ViolationRow.fired_at.is_not(None)))
            ]

    def firing_at(self) -> dict[str, datetime]:
        with self.sessions() as s:
            return {
                v.rule: v.fired_at
                for v in s.scalars(select(ViolationRow).where(ViolationRow.fired_at.is_not(None)))
                if v.fired_at is not None
            }

    def notifications(self) -> int:
        with self.sessions() as s:
            return len(s.scalars(select(NotificationRow.id)).all())

    def episodes(self) -> list[EpisodeRow]:
        with self.sessions() as s:
            return list(s.scalars(select(EpisodeRow).order_by(EpisodeRow.id)))


def ramen_switches(
    r: Replay, capture: Capture, start: datetime
) -> list[tuple[datetime, list[Item]]]:
    """Ramen's Kubernetes side of the capture's two switches: the VR asks for secondary before
    the demote; the PVC/PV/VR move a few seconds after the promote (the k8s-moved mark)."""
    plan: list[tuple[datetime, list[Item]]] = [(start, r.classes() + r.volume("dr1", "ADDED"))]
    for old, new in (("dr1", "dr2"), ("dr2", "dr1")):
        at_vr = capture.action(f"vr-secondary {SITE_OF[old]}", after=plan[-1][0])
        moved = capture.action(f"k8s-moved {SITE_OF[old]}", after=at_vr)
        vr = objects.vr(CLAIM, NS, CLAIM, "secondary")
        plan.append((at_vr, [r.event(old, "VolumeReplication", vr, "MODIFIED")]))
        plan.append((moved, r.volume(old, "DELETED") + r.volume(new, "ADDED")))
    return plan
