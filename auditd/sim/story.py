"""An hour in the life of a DR pair, replayed through the real pipeline on a simulated clock.

The same ingest -> inventory -> rules -> store -> outbox code as `auditd run`; only the sources
are replaced: Kubernetes changes arrive as the watch events the watcher would emit, and Ceph's
answers are the real `rbd` captures re-timed to the simulated minute. A simulated clock lets
the story include what takes minutes for real (for-durations, an RTO) and still play in
seconds, and makes it repeatable: the golden report tests replay it at a fixed instant.

Acts: a healthy pair; a PVC appears on the secondary (alert, resolve); the secondary's
rbd-mirror daemon dies (one grouped alert); a planned failover (no alarm, RTO recorded); a
split brain (critical), resolved by a resync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.outbox import Dispatcher
from auditd.config import Config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Item, Tick
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sim.captures import pool_status
from auditd.sources.kube.events import ObjectEvent, Observed
from auditd.sources.kube.kinds import PV, PVC, VR
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult

NAMESPACE, CLAIM, IMAGE, POOL = "payments", "ledger", "csi-vol-0001", "replicapool"
LENGTH = timedelta(minutes=62)
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
STEP = timedelta(seconds=30)  # one probe cycle


@dataclass
class Act:
    at: timedelta
    title: str
    scenario: dict[str, str] = field(default_factory=dict)  # cluster -> capture scenario
    create: list[str] = field(default_factory=list)  # clusters that get the volume's objects
    delete: list[str] = field(default_factory=list)
    stray_pvc: str | None = None  # cluster that gets a PVC it must not have
    remove_stray: str | None = None


def _both(scenario: str) -> dict[str, str]:
    return {"dr1": scenario, "dr2": scenario}


ACTS = [
    Act(timedelta(0), "A healthy pair: dr1 is primary for payments/ledger, dr2 replays it",
        _both("healthy"), create=["dr1"]),
    Act(timedelta(minutes=8), "Someone applies the PVC payments/ledger on dr2, the secondary",
        stray_pvc="dr2"),
    Act(timedelta(minutes=12), "The stray PVC is deleted from dr2", remove_stray="dr2"),
    Act(timedelta(minutes=18), "The rbd-mirror daemon on dr2 dies",
        _both("mirror-daemon-down-t65s")),
    Act(timedelta(minutes=30), "rbd-mirror is back", _both("healthy")),
    Act(timedelta(minutes=38), "Planned failover to dr2: dr1's image is demoted",
        _both("failover-1-demoted-site-a")),
    Act(timedelta(minutes=38, seconds=30), "The application's PVC, PV and VR appear on dr2",
        create=["dr2"]),
    Act(timedelta(minutes=39), "dr2's image is promoted", _both("failover-2-promoted-site-b")),
    Act(timedelta(minutes=39, seconds=30), "dr1's PVC, PV and VR are cleaned up",
        delete=["dr1"]),
    Act(timedelta(minutes=50), "Split brain: dr1's image is force-promoted too",
        _both("split-brain-1-force-promoted-site-b")),
    Act(timedelta(minutes=56), "dr1 is demoted and resynced from dr2",
        {"dr1": "split-brain-3-resynced", "dr2": "split-brain-1-force-promoted-site-b"}),
]  # fmt: skip


class SimEvents:
    """The simulated clusters' objects, turned into the watch events auditd would receive."""

    def __init__(self) -> None:
        self.rv = 0

    def event(
        self, cluster: str, kind: str, obj: dict[str, Any], typ: EventType, at: datetime
    ) -> ObjectEvent:
        self.rv += 1
        m = obj["metadata"]
        observed = Observed(
            m.get("namespace", ""), m["name"], f"uid-{cluster}-{kind}-{m['name']}",
            str(self.rv), facts_of(kind, obj),
        )  # fmt: skip
        return ObjectEvent(cluster, kind, typ, observed, at)

    def volume(self, cluster: str, typ: EventType, at: datetime) -> list[ObjectEvent]:
        pv_name = f"pvc-{cluster}-0001"
        return [
            self.event(cluster, PVC.kind, objects.pvc(CLAIM, NAMESPACE, volume=pv_name), typ, at),
            self.event(cluster, PV.kind, objects.pv(pv_name, NAMESPACE, CLAIM, IMAGE), typ, at),
            self.event(cluster, VR.kind, objects.vr(CLAIM, NAMESPACE, CLAIM), typ, at),
        ]


def probe(cluster: str, scenario: str, at: datetime) -> ProbeResult:
    status = parse_pool_status(pool_status(scenario, cluster, at))
    # Some captures hold the lab's other test images; the story is about one volume.
    status = replace(status, images=[i for i in status.images if i.name == IMAGE])
    return ProbeResult(cluster, POOL, "status", at, 0.08, status=status)


def timeline(start: datetime) -> Iterator[tuple[datetime, list[str], list[Item]]]:
    """Every simulated probe cycle: its time, the acts that begin then, and the items."""
    world, scenario = SimEvents(), {"dr1": "healthy", "dr2": "healthy"}
    acts = list(ACTS)
    offset = timedelta(0)
    while offset <= LENGTH:
        now = start + offset
        titles: list[str] = []
        items: list[Item] = []
        while acts and acts[0].at <= offset:
            act = acts.pop(0)
            at = start + act.at
            titles.append(act.title)
            scenario.update(act.scenario)
            for cluster in act.create:
                items += world.volume(cluster, "ADDED", at)
            for cluster in act.delete:
                items += world.volume(cluster, "DELETED", at)
            if act.stray_pvc:
                stray = objects.pvc(CLAIM, NAMESPACE, phase="Pending")
                items.append(world.event(act.stray_pvc, PVC.kind, stray, "ADDED", at))
            if act.remove_stray:
                stray = objects.pvc(CLAIM, NAMESPACE, phase="Pending")
                items.append(world.event(act.remove_stray, PVC.kind, stray, "DELETED", at))
        items += [probe(c, scenario[c], now) for c in ("dr1", "dr2")]
        items.append(Tick(now))
        yield now, titles, items
        # Acts between two probe cycles happen at their own time, not at the next cycle.
        offset = min(offset + STEP, acts[0].at if acts else offset + STEP)


def replay(
    sessions: sessionmaker[Session],
    config: Config,
    start: datetime,
    dispatcher: Dispatcher | None,
    say: Callable[[str], None] = lambda _t: None,
) -> None:
    """Play the story from ``start`` into the history database (an empty one, or one whose
    objects do not overlap: the story's clusters are dr1 and dr2, its namespace payments)."""
    ingest = Ingestor(
        sessions, Inventory(), RuleEngine(config), {}, list(dispatcher.sinks) if dispatcher else []
    )
    for now, titles, items in timeline(start):
        for title in titles:
            say(f"[{now:%H:%M:%S}] {title}")
        ingest.process(items, now)
        if dispatcher is not None:
            dispatcher.drain_once(now=now)
