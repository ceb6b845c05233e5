from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditd.inventory.facts import facts_of, pv_facts, pvc_facts, vr_facts
from auditd.inventory.inventory import Delta, Inventory, Known, ObjectKey
from auditd.sim import objects
from auditd.sources.kube.events import (
    ObjectEvent,
    Observed,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PVC = "PersistentVolumeClaim"


def _with_rv(obj: dict[str, Any], rv: int, uid: str = "u1") -> dict[str, Any]:
    obj["metadata"].update(resourceVersion=str(rv), uid=uid)
    return obj


def snapshot(
    inv: Inventory,
    cluster: str,
    objs: list[dict[str, Any]],
    rv: str,
    source: str,
    page_size: int = 1,
) -> Delta:
    """Hand over a complete list the way the watcher does: start, pages, end."""
    delta = inv.apply(SnapshotStart(cluster, PVC, source, T))  # type: ignore[arg-type]
    for i in range(0, max(len(objs), 1), page_size):
        page = [observed(o) for o in objs[i : i + page_size]]
        inv.apply(SnapshotPage(cluster, PVC, page, source, T), delta)  # type: ignore[arg-type]
    inv.apply(SnapshotEnd(cluster, PVC, rv, source, T), delta)  # type: ignore[arg-type]
    return delta


def observed(obj: dict[str, Any]) -> Observed:
    """What the watcher hands over for a raw object."""
    m = obj["metadata"]
    return Observed(
        m.get("namespace", ""),
        m["name"],
        m.get("uid"),
        m.get("resourceVersion"),
        facts_of(PVC, obj),
    )


def ev(etype: str, obj: dict[str, Any], cluster: str = "dr2") -> ObjectEvent:
    return ObjectEvent(cluster, PVC, etype, observed(obj), T)  # type: ignore[arg-type]


def test_pvc_facts_ignore_churn() -> None:
    a = objects.pvc("data", "ns", volume="pv1")
    b = objects.pvc("data", "ns", volume="pv1")
    b["metadata"].update(resourceVersion="999", managedFields=[{"manager": "kubectl"}])
    b["metadata"]["annotations"] = {"heartbeat": "2026-11-26T12:00:00Z"}
    assert (
        pvc_facts(a)
        == pvc_facts(b)
        == {
            "phase": "Bound",
            "volumeName": "pv1",
            "storageClassName": "rook-ceph-block",
            "deletionTimestamp": None,
            "labels": '{"app":"ns"}',
        }
    )


def test_pv_and_vr_facts() -> None:
    f = pv_facts(objects.pv("pv1", "ns", "data", "csi-vol-1"))
    assert (
        f["claimRef"] == "ns/data" and f["imageName"] == "csi-vol-1" and f["pool"] == "replicapool"
    )
    vr = objects.vr("data", "ns", "data")
    vr["metadata"]["generation"] = 2
    vr["status"] = {
        "state": "Primary",
        "conditions": [
            {"type": "Completed", "status": "True", "reason": "Promoted", "observedGeneration": 2},
            {
                "type": "Degraded",
                "status": "True",
                "reason": "VolumeDegraded",
                "observedGeneration": 1,
            },
        ],
    }
    f = vr_facts(vr)
    assert f["condition.Completed"] == "True/Promoted"
    assert "condition.Degraded" not in f  # stale: describes generation 1


def test_added_modified_deleted_make_field_transitions() -> None:
    inv = Inventory()
    d = inv.apply(ev("ADDED", _with_rv(objects.pvc("data", "ns", phase="Pending"), 10)))
    assert [(t.field, t.old, t.new) for t in d.transitions] == [
        ("exists", "false", "true"),
        ("labels", None, '{"app":"ns"}'),
        ("phase", None, "Pending"),
        ("storageClassName", None, "rook-ceph-block"),
    ]
    d = inv.apply(ev("MODIFIED", _with_rv(objects.pvc("data", "ns", volume="pv1"), 11)))
    assert [(t.field, t.old, t.new) for t in d.transitions] == [
        ("phase", "Pending", "Bound"),
        ("volumeName", None, "pv1"),
    ]
    d = inv.apply(ev("DELETED", _with_rv(objects.pvc("data", "ns", volume="pv1"), 12)))
    assert [(t.field, t.old, t.new, t.source) for t in d.transitions] == [
        ("exists", "true", "false", "watch")
    ]
    assert not inv.objects


def test_replayed_and_churn_events_make_no_transition() -> None:
    inv = Inventory()
    inv.apply(ev("ADDED", _with_rv(objects.pvc("data", "ns"), 10)))
    assert not inv.apply(ev("ADDED", _with_rv(objects.pvc("data", "ns"), 10)))  # replay
    assert not inv.apply(ev("MODIFIED", _with_rv(objects.pvc("data", "ns"), 9)))  # older
    churn = _with_rv(objects.pvc("data", "ns"), 15)
    churn["metadata"]["managedFields"] = [{"manager": "x"}]
    assert not inv.apply(ev("MODIFIED", churn))
    key = ObjectKey("dr2", PVC, "ns", "data")
    assert inv.objects[key].resource_version == "15"
    assert not inv.apply(ev("DELETED", _with_rv(objects.pvc("gone", "ns"), 16)))


def test_relist_reconciles_changes_and_deletions_as_late() -> None:
    inv = Inventory()
    snapshot(
        inv,
        "dr2",
        [_with_rv(objects.pvc("a", "ns"), 10), _with_rv(objects.pvc("b", "ns"), 11)],
        "11",
        "list",
    )
    d = snapshot(inv, "dr2", [_with_rv(objects.pvc("a", "ns", phase="Lost"), 20)], "20", "relist")
    got = sorted((t.key.name, t.field, t.old, t.new, t.source, t.late) for t in d.transitions)
    assert got == [
        ("a", "phase", "Bound", "Lost", "relist", True),
        ("b", "exists", "true", "false", "relist", True),
    ]


def test_first_list_after_restart_is_a_resync() -> None:
    inv = Inventory()
    key = ObjectKey("dr2", PVC, "ns", "a")
    inv.load([(key, Known("u1", "10", pvc_facts(objects.pvc("a", "ns"))))])
    d = snapshot(inv, "dr2", [_with_rv(objects.pvc("new", "ns"), 30, "u2")], "30", "list")
    assert {
        (t.key.name, t.field, t.source, t.late) for t in d.transitions if t.field == "exists"
    } == {
        ("a", "exists", "resync", True),
        ("new", "exists", "resync", True),
    }
    # The other cluster had no history: its first list is a baseline, not late.
    d = snapshot(inv, "dr1", [_with_rv(objects.pvc("x", "ns"), 5)], "5", "list")
    assert {(t.source, t.late) for t in d.transitions} == {("list", False)}


def test_recreated_object_is_recorded() -> None:
    inv = Inventory()
    snapshot(inv, "dr2", [_with_rv(objects.pvc("a", "ns"), 10, "u1")], "10", "list")
    d = snapshot(inv, "dr2", [_with_rv(objects.pvc("a", "ns"), 40, "u2")], "40", "relist")
    assert [(t.field, t.old, t.new) for t in d.transitions] == [("uid", "u1", "u2")]
