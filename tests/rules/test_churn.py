"""Volumes come and go for months (applications created and deleted, CI namespaces, StatefulSets
scaled): what auditd keeps in memory follows the volumes that exist, not every volume it ever
saw. Each step below creates one volume (PVC, PV and VR on the primary, its image on both sites)
and deletes the oldest, as a long-running pair does; afterwards every index, window and
per-image record is back to what it held before."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipeline import T0, Pipeline
from prometheus_client import generate_latest

from auditd.config import parse_config
from auditd.daemon.items import Tick
from auditd.daemon.metrics import Metrics
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.inventory.probe_book import ProbeBook
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sim.rbdpool import image_name, pool_status
from auditd.sources.kube.events import ObjectEvent, Observed
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIVE = 10  # volumes that exist at any time
STALE_AFTER = timedelta(minutes=3)


def event(
    kind: str, obj: dict[str, Any], type_: Literal["ADDED", "DELETED"], at: datetime
) -> ObjectEvent:
    m = obj["metadata"]
    rv = "1" if type_ == "ADDED" else "2"  # the API server's delete is a newer version
    seen = Observed(m.get("namespace", ""), m["name"], None, rv, facts_of(kind, obj))
    return ObjectEvent("dr1", kind, type_, seen, at)


def volume(i: int) -> list[tuple[str, dict[str, Any]]]:
    ns = f"app{i % 3}"
    return [
        ("PersistentVolumeClaim", objects.pvc(f"data-{i}", ns, volume=f"pv-{i}")),
        ("PersistentVolume", objects.pv(f"pv-{i}", ns, f"data-{i}", image_name(i))),
        ("VolumeReplication", objects.vr(f"data-{i}", ns, f"data-{i}")),
    ]


def held(*holders: object) -> dict[str, int]:
    """Every dict and set each holder keeps, by name, with how many entries: a new index
    added later is counted without changing this test."""
    return {
        f"{type(h).__name__}.{name}": len(value)
        for h in holders
        for name, value in vars(h).items()
        if isinstance(value, dict | set)
    }


class Pair:
    def __init__(self) -> None:
        config = parse_config(
            {
                "clusters": [
                    {"name": "dr1", "role": "primary"},
                    {"name": "dr2", "role": "secondary"},
                ],
                "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
            }
        )
        self.inventory = Inventory()
        self.engine = RuleEngine(config)
        self.book = ProbeBook(timedelta(minutes=5))
        self.metrics = Metrics()

    def step(self, at: datetime, added: range, deleted: range, listed: range) -> None:
        """Objects of ``added`` created and of ``deleted`` deleted, then both sites probed with
        the images of ``listed``: one committed batch, judged and measured."""
        touched: set[ObjectKey] = set()
        transitions = []
        for i in added:
            for kind, obj in volume(i):
                delta = self.inventory.apply(event(kind, obj, "ADDED", at))
                touched |= delta.touched
                transitions += delta.transitions
        for i in deleted:
            for kind, obj in volume(i):
                delta = self.inventory.apply(event(kind, obj, "DELETED", at))
                touched |= delta.touched
                transitions += delta.transitions
        refreshed = set()
        lags = []
        for cluster in ("dr1", "dr2"):
            status = parse_pool_status(pool_status(cluster, listed, at).encode())
            result = ProbeResult(cluster, "replicapool", "status", at, 0.1, status=status)
            delta = self.inventory.apply_probe(result, STALE_AFTER)
            touched |= delta.touched
            transitions += delta.transitions
            refreshed |= self.engine.record_probe(result)
            probe_lags = self.book.lags(result, self.inventory)
            self.book.samples(result, probe_lags)
            lags += probe_lags
        self.book.accept()
        self.engine.evaluate(self.inventory, touched, at, lag_only=refreshed)
        self.metrics.observe([], transitions, lags, [], {})


def test_a_thousand_volumes_come_and_go_and_nothing_of_them_stays() -> None:
    pair = Pair()
    at = AT
    pair.step(at, range(LIVE), range(0), range(LIVE))
    for n in range(1, 4):  # a few probes: records settle, windows and samples begin
        pair.step(at + timedelta(seconds=30 * n), range(0), range(0), range(LIVE))
    at += timedelta(minutes=2)
    before = held(pair.engine, pair.engine.correlator, pair.engine.windows, pair.metrics)
    series = len(generate_latest(pair.metrics.registry).splitlines())
    assert len(pair.engine.correlator.volumes()) == LIVE

    for new in range(LIVE, LIVE + 1000):
        at += timedelta(seconds=30)
        gone = new - LIVE
        pair.step(at, range(new, new + 1), range(gone, gone + 1), range(gone + 1, new + 1))

    assert len(pair.engine.correlator.volumes()) == LIVE
    after = held(pair.engine, pair.engine.correlator, pair.engine.windows, pair.metrics)
    assert after == before
    assert len(generate_latest(pair.metrics.registry).splitlines()) == series
    kept = [vars(p) for p in vars(pair.book)["_pools"].values()]
    assert all(len(p["sampled_at"]) <= LIVE and len(p["peak_lag"]) <= LIVE for p in kept)


def footprint(root: object) -> dict[str, int]:
    """Every dict, set and list reachable from ``root`` through auditd's own objects (and the
    values of small dicts: one per pool, per stream), by attribute path, with its length."""
    out: dict[str, int] = {}
    seen: set[int] = set()

    def walk(obj: object, path: str) -> None:
        if id(obj) in seen or not hasattr(obj, "__dict__"):
            return
        seen.add(id(obj))
        for name, value in vars(obj).items():
            at = f"{path}.{name}"
            if isinstance(value, dict | set | list):
                out[at] = len(value)
                if isinstance(value, dict) and len(value) <= 16:  # per pool, per stream, ...
                    for k, v in value.items():
                        if type(v).__module__.startswith("auditd."):
                            walk(v, f"{at}[{k}]")
            elif type(value).__module__.startswith("auditd.") and not isinstance(value, type):
                walk(value, at)

    walk(root, type(root).__name__)
    return out


def test_the_ingest_writer_holds_as_much_after_months_of_churn_as_before(tmp_path: Path) -> None:
    """The whole writer (inventory, records, probe book, rules, lifecycle, windows), through
    the database, while volumes come and go and a PVC appears on the secondary (a violation that
    fires, reaches the outbox and resolves) and goes again at every step."""
    p = Pipeline(tmp_path)
    at = T0

    def step(added: range, deleted: range, listed: range, stray: int | None, gone: int | None):
        items: list[object] = []
        for i in added:
            items += [event(kind, obj, "ADDED", at) for kind, obj in volume(i)]
        for i in deleted:
            items += [event(kind, obj, "DELETED", at) for kind, obj in volume(i)]
        if stray is not None:  # a PVC of a live volume's name created on the secondary
            items.append(replace(event(*volume(stray)[0], "ADDED", at), cluster="dr2"))
        if gone is not None:
            items.append(replace(event(*volume(gone)[0], "DELETED", at), cluster="dr2"))
        for cluster in ("dr1", "dr2"):
            status = parse_pool_status(pool_status(cluster, listed, at).encode())
            items.append(ProbeResult(cluster, "replicapool", "status", at, 0.1, status=status))
        p.ingest.process([*items, Tick(at)], at)

    step(range(LIVE), range(0), range(LIVE), None, None)
    for n in range(4):  # one stray PVC already came and went: dr2's PVCs have their index
        at += timedelta(seconds=30)
        step(range(0), range(0), range(LIVE), 0 if n == 0 else None, 0 if n == 1 else None)
    before = footprint(p.ingest)
    for new in range(LIVE, LIVE + 300):
        at += timedelta(seconds=30)
        old = new - LIVE
        step(range(new, new + 1), range(old, old + 1), range(old + 1, new + 1), new, new - 1)
    at += timedelta(seconds=30)
    step(range(0), range(0), range(LIVE + 300 - LIVE, LIVE + 300), None, LIVE + 299)
    for _ in range(4):  # the last stray PVC's violation resolves
        at += timedelta(seconds=30)
        step(range(0), range(0), range(300, LIVE + 300), None, None)

    fired = [v for v in p.violations() if v[0] == "pvc-on-secondary"]
    assert len([v for v in fired if v[2] == "resolved"]) >= 250  # the churn was seen and judged
    after = footprint(p.ingest)
    grew = {k: (before.get(k), n) for k, n in after.items() if n > before.get(k, 0)}
    assert grew == {}
