"""A cluster on its first list is judged as a whole when the list ends, not page by page."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from captured_pair import T, k8s
from pipeline import CONFIG

from auditd.config import parse_config
from auditd.daemon.auditor import Auditor
from auditd.daemon.items import HealthReport, Item
from auditd.daemon.led import Led
from auditd.daemon.scopes import Scopes
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Verdict
from auditd.rules.views import VolumeId
from auditd.sim import objects
from auditd.sources.kube.events import SnapshotEnd, SnapshotPage, SnapshotStart
from auditd.sources.kube.health import StreamHealth

KINDS = ("PersistentVolumeClaim", "PersistentVolume", "VolumeReplication")


class Judging(RuleEngine):
    """The engine as the daemon runs it, counting how often each volume is judged."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: Counter[VolumeId] = Counter()

    def _evaluate(
        self, inventory: Inventory, keys: Any, volumes: list[VolumeId], *args: Any, **kw: Any
    ) -> dict[tuple[str, str], Verdict]:
        self.seen.update(volumes)
        return super()._evaluate(inventory, keys, volumes, *args, **kw)


def health(listing: set[str]) -> HealthReport:
    """Every stream of both clusters: those of ``listing`` kinds on dr1 still on their first
    list, the rest listed and connected."""
    streams = []
    for cluster in ("dr1", "dr2"):
        for kind in KINDS:
            first = cluster == "dr1" and kind in listing
            streams.append(StreamHealth(cluster, kind, connected=not first, synced=not first))
    return HealthReport(T, [h.snapshot() for h in streams])


def page(kind: str, images: range) -> SnapshotPage:
    """A page of dr1's first list of ``kind``: one object per image."""
    observed = []
    for i in images:
        claim, image = f"data-{i}", f"csi-vol-{i:04d}"
        obj = {
            "PersistentVolumeClaim": objects.pvc(claim, "app", volume=f"pv-{i}"),
            "PersistentVolume": objects.pv(f"pv-{i}", "app", claim, image),
            "VolumeReplication": objects.vr(claim, "app", claim),
        }[kind]
        observed.append(k8s("dr1", kind, obj).object)
    return SnapshotPage("dr1", kind, observed, "list", T)


def start(kind: str) -> SnapshotStart:
    return SnapshotStart("dr1", kind, "list", T)


def end(kind: str) -> SnapshotEnd:
    return SnapshotEnd("dr1", kind, "100", "list", T)


def test_a_first_list_judges_each_volume_once_when_it_ends_and_misses_none() -> None:
    """A start in pages: PVCs and PVs of 20 volumes, VRs of 19, the three lists interleaved.
    While any dr1 stream lists, no volume is judged; when the last ends, each is judged once,
    and the one without a VR is the one violation."""
    config = parse_config(CONFIG)
    scopes = Scopes.of(config)
    engine = Judging(config)
    a = Auditor(Inventory(), engine, {}, Led(scopes, frozenset(scopes.all)))
    now = T
    pvc, pv, vr = KINDS
    pages: list[list[Item]] = [
        [health(set(KINDS))],
        [start(pvc), page(pvc, range(0, 10)), start(pv), start(vr)],
        [page(pv, range(0, 10))],
        [page(vr, range(0, 10))],
        [page(pvc, range(10, 20)), end(pvc)],
        [page(pv, range(10, 20)), end(pv), health({vr})],
        [page(vr, range(10, 19)), end(vr)],
    ]
    for batch in pages:
        now += timedelta(seconds=1)
        commit = a.step(batch, now)
        a.accept(commit)
        assert commit.changes == []
    assert sum(engine.seen.values()) == 0, "judged on a partial list"

    now += timedelta(seconds=1)
    commit = a.step([health(set())], now)  # the VR list ends: dr1 is current
    a.accept(commit)
    assert set(engine.seen.values()) == {1}
    assert len(engine.seen) == 20
    assert [(c.violation.rule, c.violation.subject) for c in commit.changes] == [
        ("unprotected-volume", "p/replicapool/csi-vol-0019")
    ]
