"""One DR pair as the real Ceph captures show it: the captures, Kubernetes events for a
volume's PVC/PV/VR, and probe results (good and failed). Shared by the rule and pipeline
tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditd.config import Config
from auditd.daemon.items import HealthReport
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Finding
from auditd.sim import objects
from auditd.sources.kube.events import ObjectEvent, Observed
from auditd.sources.kube.health import StreamHealth
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.sources.rbd.transport import ProbeFailure

DATA = Path(__file__).parent / "data" / "rbd"
T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SITE = {"dr1": "site-a", "dr2": "site-b"}


def k8s(cluster: str, kind: str, obj: dict[str, Any], rv: int = 1) -> ObjectEvent:
    m = obj["metadata"]
    return ObjectEvent(
        cluster,
        kind,
        "ADDED",
        Observed(
            m.get("namespace", ""),
            m["name"],
            f"uid-{cluster}-{m['name']}",
            str(rv),
            facts_of(kind, obj),
        ),
        T,
    )  # type: ignore[arg-type]


def volume(cluster: str, image: str = "csi-vol-0001", ns: str = "app") -> list[ObjectEvent]:
    """PVC + PV + VR for one image on one cluster, as after provisioning there."""
    pv_name = f"pv-{cluster}-{image}"
    return [
        k8s(cluster, "PersistentVolumeClaim", objects.pvc("data", ns, volume=pv_name)),
        k8s(cluster, "PersistentVolume", objects.pv(pv_name, ns, "data", image)),
        k8s(cluster, "VolumeReplication", objects.vr("data", ns, "data")),
    ]


def probe(cluster: str, scenario: str) -> ProbeResult:
    path = DATA / scenario / f"{SITE[cluster]}-mirror-pool-status-verbose.json"
    status = parse_pool_status(path.read_text())
    at = max(i.local.last_update for i in status.images if i.local.last_update) + timedelta(
        seconds=5
    )
    return ProbeResult(cluster, "replicapool", "status", at, 0.1, status=status)


def failed(cluster: str) -> ProbeResult:
    return ProbeResult(
        cluster, "replicapool", "status", T, 20, failure=ProbeFailure("timeout", "no answer")
    )


def judge_all(
    items: list[Any], config: Config, now: datetime | None = None
) -> dict[tuple[str, str], Any]:
    """Take the items in one by one, as the writer does (each change judged as it comes), then
    every rule on everything held: the verdicts by (rule, subject)."""
    inv, engine = Inventory(), RuleEngine(config)
    for item in items:
        if isinstance(item, ProbeResult):
            delta = inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        elif isinstance(item, HealthReport):  # the watch streams' health, as the writer takes it
            delta = inv.apply_health(item.streams, item.at, timedelta(minutes=5),
                                     timedelta(seconds=10))  # fmt: skip
        else:
            delta = inv.apply(item)
        engine.evaluate(inv, delta.touched, now)
    return engine.evaluate(inv, set(inv.objects), now)


def lost_watch(cluster: str, kind: str, at: datetime = T) -> HealthReport:
    """A health report at ``at``: this cluster's stream of this kind lost an hour before."""
    health = StreamHealth(cluster, kind, connected=False, synced=True)
    health.disconnected_since = at - timedelta(hours=1)
    return HealthReport(at, [health.snapshot()])


def fired(verdicts: dict[tuple[str, str], Any]) -> dict[str, list[str]]:
    """The subjects each rule found violated."""
    out: dict[str, list[str]] = {}
    for (rule, subject), v in sorted(verdicts.items()):
        if isinstance(v, Finding):
            out.setdefault(rule, []).append(subject)
    return out
