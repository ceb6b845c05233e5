"""Rules asked only about what changed (rules/narrow.py, and a pool or stream only when what
the views read of it changed), on the views they judged last time, decide exactly what every
rule asked about every volume at every batch, on fresh views, decides.

Two auditors take the same random batches: one as the daemon runs (a volume changed only in
PVC/PV/VR facts that link nothing is asked of the rules that read one of them), the other
asking every rule about every volume. Every batch must move the same violations, and leave the
same open, rule by rule and state by state. The batches mix narrow changes (a PVC's phase, a
VR's state, conditions, lastSyncTime, class) with wide ones (objects created and deleted,
relinked, probes of real captures and failing probes, watch streams blind and back,
VolumeReplicationClass intervals, Ramen's VRG, a consistency group and the hub's DRPC joining
the namespace's volumes, the hub's DRClusters fencing a cluster). Time moves only in batches that probe both sites, which judge every
volume anyway: a verdict that time alone changes (lag past the RPO) is then seen by both at
once, as the daemon sees it at its next probe.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from captured_pair import failed, probe
from pipeline import CONFIG, T0

from auditd.config import parse_config
from auditd.daemon.auditor import Auditor
from auditd.daemon.items import HealthReport, Item, Tick
from auditd.daemon.led import Led
from auditd.daemon.scopes import Scopes
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Verdict
from auditd.rules.narrow import LINKS, narrow_changes, reads_any
from auditd.rules.views import PV, PVC, VR, VolumeId
from auditd.sources.kube import kinds
from auditd.sources.kube.events import ObjectEvent, Observed
from auditd.sources.kube.health import StreamHealth

VRC = "VolumeReplicationClass"
VRG, DRPC, VGR = "VolumeReplicationGroup", "DRPlacementControl", "VolumeGroupReplication"
CLAIM_JOINED = [k.kind for k in kinds.ALL_KINDS if k.joins and k.joins.by == "claim"]
DR_CLUSTER = "DRCluster"
# Where each of Ramen's kinds lives: the DRPC and the DRClusters on the pair's hub.
ON_HUB = frozenset({DRPC, DR_CLUSTER})
IMAGES = ("csi-vol-0001", "csi-vol-0099")  # the first is in every capture, the second in none
CLAIMS = ("data", "logs")
SCENARIOS = (
    "healthy",
    "failover-1-demoted-site-a",
    "failover-2-promoted-site-b",
    "failover-3-failback",
    "split-brain-1-force-promoted-site-b",
    "split-brain-2-demoted-site-a",
    "mirror-daemon-down-t65s",
    "disable-delete-2-deleted-on-primary",
)
# Ramen's objects and consistency groups, as wholes (any change to one is wide): a VRG and a
# DRPC join the namespace's volumes, a group the PVCs it lists.
_CONDITION = ["True/Ready", "False/Error", "False/Progressing", None]
RAMEN: dict[str, dict[str, list[str | None]]] = {
    VRG: {
        "replicationState": ["primary", "secondary"],
        "pvcSelector": ["{}", '{"matchLabels": {"app": "shop"}}', "not json"],
        "protectedPVCs": [None, "", "app/data", "app/data,app/logs"],
        "condition.DataReady": _CONDITION,
        "condition.DataProtected": _CONDITION,
        "condition.ClusterDataProtected": _CONDITION,
    },
    DR_CLUSTER: {
        # Cluster-scoped on the hub, one per DR cluster: a fence touches every volume there.
        "clusterFence": [None, "Unfenced", "Fenced"],
        "phase": ["Available", "Available", "Fenced"],
    },
    DRPC: {
        # Mostly at rest: an action opens a DR window on every volume of the namespace, and a
        # volume in a window is judged whole at every tick (each batch here ends in one).
        "phase": ["Deployed", "FailedOver", "Relocated", "Deployed", "Relocating", None],
        "progression": ["Completed", "Completed", "Completed", "WaitingForResourceRestore"],
        "preferredCluster": ["dr1", "dr2", None],
        "failoverCluster": ["dr1", "dr2", None],
        "lastGroupSyncTime": [None, "2026-11-26T11:59:00Z", "2026-11-26T10:00:00Z"],
    },
    VGR: {
        "members": ["data", "data,logs", "logs", None],
        "replicationState": ["primary", "secondary"],
        "state": ["Primary", "Secondary", None],
    },
}
# The facts each kind may take, narrow ones first: what a burst of status updates changes.
NARROW: dict[str, dict[str, list[str | None]]] = {
    PVC: {
        "phase": ["Bound", "Lost", "Pending"],
        "storageClassName": ["rook-ceph-block", "standard"],
        "labels": [None, '{"app": "shop"}'],
    },
    PV: {"phase": ["Bound", "Released"], "reclaimPolicy": ["Delete", "Retain"]},
    VR: {
        "replicationState": ["primary", "secondary"],
        "state": ["Primary", "Secondary", "Unknown", None],
        "lastSyncTime": [None, "2026-11-26T11:59:00Z", "2026-11-26T10:00:00Z"],
        "volumeReplicationClass": ["vrc-1m", "vrc-1h"],
        "condition.Degraded": [None, "True/Syncing", "False/Healthy"],
        "condition.Completed": [None, "True/Promoted", "False/Failed"],
    },
}


class Counting(RuleEngine):
    """The engine as the daemon runs it, counting the verdicts it gives."""

    given = 0

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[tuple[str, str], Verdict]:
        verdicts = super().evaluate(*args, **kwargs)
        Counting.given += len(verdicts)
        return verdicts


class EveryRule(RuleEngine):
    """The reference: every rule asked about every volume at every evaluation, whatever
    changed, on views built afresh."""

    given = 0

    def evaluate(
        self,
        inventory: Inventory,
        touched: Iterable[ObjectKey],
        now: datetime,
        also: Iterable[VolumeId] = (),
        *args: Any,
        changed: Mapping[ObjectKey, Iterable[str]] | None = None,
        **kwargs: Any,
    ) -> dict[tuple[str, str], Verdict]:
        self._views.clear()
        every = {*also, *self.correlator.volumes()}
        # And every object no view holds (judged on its own key, against its peer's volume).
        # Asked key by key (``linked``), not derived from the views as the engine does.
        touched = {
            *touched,
            *(
                k
                for c in self.config.clusters
                for kind in (PVC, *CLAIM_JOINED)
                for k in inventory.keys_of(c.name, kind)
                if not self.correlator.linked(inventory, k)
            ),
        }
        verdicts = super().evaluate(inventory, touched, now, every, *args, **kwargs)
        EveryRule.given += len(verdicts)
        return verdicts


def auditor(engine: type[RuleEngine]) -> Auditor:
    pair = {**CONFIG["pairs"][0], "mirrored_storage_classes": ["rook-ceph-block"], "hub": "hub"}  # type: ignore[index]
    config = parse_config(
        {"clusters": [*CONFIG["clusters"], {"name": "hub", "role": "hub"}], "pairs": [pair]}  # type: ignore[misc]
    )
    scopes = Scopes.of(config)
    return Auditor(Inventory(), engine(config), {}, Led(scopes, frozenset(scopes.all)))


class World:
    """The objects on both clusters, as facts, and the events that change them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.objects: dict[tuple[str, str, str, str], dict[str, str | None]] = {}
        self.rv = 0

    def event(self, cluster: str, kind: str, ns: str, name: str, gone: bool = False) -> Item:
        self.rv += 1
        key = (cluster, kind, ns, name)
        facts = self.objects.pop(key, {}) if gone else self.objects[key]
        kind_of = "DELETED" if gone else "MODIFIED"
        uid = f"uid-{cluster}-{kind}-{ns}-{name}"
        return ObjectEvent(
            cluster, kind, kind_of, Observed(ns, name, uid, str(self.rv), dict(facts)), T0
        )  # type: ignore[arg-type]

    def create(self, cluster: str, kind: str, image: str) -> Item:
        claim = CLAIMS[IMAGES.index(image)]
        pv = f"pv-{cluster}-{image}"
        facts: dict[str, str | None]
        if kind == PVC:
            ns, name = "app", claim
            facts = {"volumeName": pv, "deletionTimestamp": None}
        elif kind == PV:
            ns, name = "", pv
            facts = {"claimRef": f"app/{claim}", "imageName": image, "pool": "replicapool"}
        else:
            ns, name = "app", claim
            facts = {"dataSource": claim, "deletionTimestamp": None}
        for fact, values in NARROW[kind].items():
            facts[fact] = self.rng.choice(values)
        self.objects[(cluster, kind, ns, name)] = facts
        return self.event(cluster, kind, ns, name)

    def narrow(self) -> Item | None:
        held = sorted(k for k in self.objects if k[1] in NARROW)
        if not held:
            return None
        cluster, kind, ns, name = self.rng.choice(held)
        fact = self.rng.choice(sorted(NARROW[kind]))
        self.objects[(cluster, kind, ns, name)][fact] = self.rng.choice(NARROW[kind][fact])
        return self.event(cluster, kind, ns, name)

    def wide(self) -> Item:
        cluster = self.rng.choice(("dr1", "dr2"))
        if self.rng.random() < 0.25:  # each joins every volume of the namespace: rarer
            kind = self.rng.choice(sorted(RAMEN))
            where = "hub" if kind in ON_HUB else cluster
            ns, name = ("", cluster) if kind == DR_CLUSTER else ("app", "app")
            key = (where, kind, ns, name)
            if key in self.objects and self.rng.random() < 0.3:
                return self.event(where, kind, ns, name, gone=True)
            self.objects[key] = {f: self.rng.choice(v) for f, v in RAMEN[kind].items()}
            return self.event(where, kind, ns, name)
        kind = self.rng.choice((PVC, PV, VR, VRC))
        if kind == VRC:
            name = self.rng.choice(("vrc-1m", "vrc-1h"))
            interval = self.rng.choice(("1m", "5m", "1h"))
            self.objects[(cluster, VRC, "", name)] = {"schedulingInterval": interval}
            return self.event(cluster, VRC, "", name)
        image = self.rng.choice(IMAGES)
        claim = CLAIMS[IMAGES.index(image)]
        ns, name = ("", f"pv-{cluster}-{image}") if kind == PV else ("app", claim)
        key = (cluster, kind, ns, name)
        if key in self.objects:
            roll = self.rng.random()
            if roll < 0.5:
                return self.event(cluster, kind, ns, name, gone=True)
            # Relinked: a PV to another claim (another PV's too: a PVC two PVs claim belongs
            # to the one its volumeName names, else the first by name, whatever the order they
            # came in), a PVC to another PV, a VR to another PVC.
            if kind == PV:
                link, value = (
                    "claimRef",
                    self.rng.choice(
                        (f"app/{claim}", f"app/{claim}-old", f"app/{self.rng.choice(CLAIMS)}")
                    ),
                )
            elif kind == PVC:
                link = "volumeName"
                value = self.rng.choice(("other", *(f"pv-{cluster}-{i}" for i in IMAGES)))
            else:
                link = next(iter(LINKS[kind]))
                value = self.rng.choice((*CLAIMS, "other", f"pv-{cluster}-{IMAGES[0]}"))
            self.objects[key][link] = value
            return self.event(cluster, kind, ns, name)
        return self.create(cluster, kind, image)


def stream(rng: random.Random, now: datetime) -> HealthReport:
    """One watch stream's health: connected, reconnecting or blind (every view of its cluster
    weighs that), or first seen connected (which changes nothing any view reads)."""
    cluster = rng.choice(("dr1", "dr2", "hub"))
    kind = rng.choice((DRPC, DR_CLUSTER) if cluster == "hub" else (PVC, VR))
    down = rng.choice((None, None, None, timedelta(seconds=30), timedelta(hours=1)))
    health = StreamHealth(cluster, kind, connected=down is None, synced=True)
    health.disconnected_since = None if down is None else now - down
    return HealthReport(now, [health.snapshot()])


def batches(seed: int, n: int) -> list[tuple[datetime, list[Item]]]:
    rng = random.Random(seed)
    world = World(rng)
    now = T0
    out: list[tuple[datetime, list[Item]]] = []
    first = [world.create(c, k, IMAGES[0]) for c in ("dr1",) for k in (PVC, PV, VR)]
    first += [probe("dr1", "healthy"), probe("dr2", "healthy")]
    out.append((now, [*first, Tick(now)]))
    for _ in range(n):
        items: list[Item] = []
        roll = rng.random()
        if roll < 0.15:
            now += timedelta(seconds=rng.choice((5, 30, 90, 400, 4000)))
            scenario = rng.choice(SCENARIOS)
            items += [replace(probe(c, scenario), at=now) for c in ("dr1", "dr2")]
        if rng.random() < 0.1:
            items.append(replace(failed(rng.choice(("dr1", "dr2"))), at=now))
        if rng.random() < 0.15:
            items.append(stream(rng, now))
        for _ in range(rng.randint(1, 4)):
            item = world.wide() if rng.random() < 0.2 else world.narrow()
            if item is not None:
                items.append(item)
        out.append((now, [*items, Tick(now)]))
    return out


def open_violations(a: Auditor) -> dict[tuple[str, str], str]:
    return {key: v.state for key, v in a.active.items()}


@pytest.mark.parametrize("seed", range(10))
def test_asking_only_the_rules_that_read_a_change_decides_as_asking_every_rule(
    seed: int,
) -> None:
    narrowed, reference = auditor(Counting), auditor(EveryRule)
    seen_open: set[str] = set()
    skipped = 0  # batches in which narrowing asked fewer rules
    seen_windows = 0  # batches in which a window opened, stepped or closed
    for i, (now, batch) in enumerate(batches(seed, 400)):
        moved = []
        given = []
        windows = []
        for a, engine in ((narrowed, Counting), (reference, EveryRule)):
            engine.given = 0
            commit = a.step(batch, now)
            a.accept(commit)
            given.append(engine.given)
            moved.append(
                [(c.violation.rule, c.violation.subject, c.violation.state) for c in commit.changes]
            )
            windows.append(
                (
                    sorted(map(repr, commit.episodes)),
                    sorted(map(repr, a.rules.windows.open.values())),
                )
            )
        assert moved[0] == moved[1], f"batch {i}: {batch}"
        # The DR windows too: opened, stepped and closed alike (the tracker is not asked
        # again about a view it left as it was: RuleEngine._quiet).
        assert windows[0] == windows[1], f"batch {i}: {batch}"
        seen_windows += bool(windows[1][0])
        assert open_violations(narrowed) == open_violations(reference), f"batch {i}: {batch}"
        seen_open |= {rule for rule, _ in reference.active}
        skipped += given[0] < given[1]
    # Not vacuous: violations of several rules opened on the way, and narrowing did skip. (Not
    # in most batches: each ends in a tick, which judges a volume in a DR window whole.)
    assert len(seen_open) >= 3, seen_open
    assert skipped >= 5, skipped
    assert seen_windows >= 5, seen_windows


def test_a_change_is_narrow_only_if_it_links_nothing() -> None:
    pvc = ObjectKey("dr1", PVC, "app", "data")
    vr = ObjectKey("dr1", VR, "app", "data")
    pool = ObjectKey("dr1", "RbdPool", "", "replicapool")
    narrow = narrow_changes(
        {
            pvc: {"phase"},
            vr: {"state", "dataSource"},  # relinked: every rule
            pool: {"probe"},  # not an object kind that can be narrow
            ObjectKey("dr2", PVC, "app", "data"): {"exists", "phase"},  # appeared
        }
    )
    assert narrow == {pvc: frozenset({(PVC, "phase")})}


def test_a_rule_reads_a_fact_by_name_or_prefix_and_undeclared_reads_everything() -> None:
    assert reads_any(None, {(PVC, "phase")})
    assert reads_any(frozenset({(VR, "condition.*")}), {(VR, "condition.Degraded")})
    assert not reads_any(frozenset({(VR, "condition.*")}), {(VR, "state")})
    assert not reads_any(frozenset({(VR, "state")}), {(PVC, "state")})
    assert not reads_any(frozenset(), {(PVC, "phase")})


def test_every_builtin_rule_says_what_it_reads_of_the_objects_that_change_most() -> None:
    """Every rule judges the volumes (or the Ramen objects and groups joined to them) of a
    burst: an undeclared one is asked about every change (correct, and slow)."""
    engine = RuleEngine(parse_config(CONFIG))
    assert [r.id for r in engine.rules.values() if r.reads is None] == []
