"""auditd/inventory/facts.py: each fact is the value at its path, or None where any step of the
path is missing or not an object, whatever shape the object comes in."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auditd.inventory.facts import facts_of
from auditd.sources.kube.observe import clean_facts

# The spec, written out: fact -> path. The extractors of the kinds of every watch event read
# these without walking each path from the top; this is what they must still read.
PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "PersistentVolumeClaim": {
        "phase": ("status", "phase"),
        "volumeName": ("spec", "volumeName"),
        "storageClassName": ("spec", "storageClassName"),
        "deletionTimestamp": ("metadata", "deletionTimestamp"),
    },
    "PersistentVolume": {
        "phase": ("status", "phase"),
        "imageName": ("spec", "csi", "volumeAttributes", "imageName"),
        "pool": ("spec", "csi", "volumeAttributes", "pool"),
        "clusterID": ("spec", "csi", "volumeAttributes", "clusterID"),
        "reclaimPolicy": ("spec", "persistentVolumeReclaimPolicy"),
        "deletionTimestamp": ("metadata", "deletionTimestamp"),
    },
    "VolumeReplication": {
        "replicationState": ("spec", "replicationState"),
        "dataSource": ("spec", "dataSource", "name"),
        "volumeReplicationClass": ("spec", "volumeReplicationClass"),
        "state": ("status", "state"),
        "lastSyncTime": ("status", "lastSyncTime"),
        "deletionTimestamp": ("metadata", "deletionTimestamp"),
    },
}
KEYS = sorted({k for paths in PATHS.values() for p in paths.values() for k in p}
              | {"labels", "claimRef", "name", "namespace", "conditions", "generation"})  # fmt: skip


def walk(obj: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def text(value: Any) -> str | None:
    """A fact's text: strings as they are, "" as None, booleans and numbers spelled."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return "<json>"  # objects and lists: their canonical JSON, checked apart below


scalars = st.none() | st.booleans() | st.integers() | st.sampled_from(["", "x", "Bound"])
junk = (
    scalars
    | st.lists(scalars, max_size=2)
    | st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2)
)


@st.composite
def objects(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """An object laid along the kind's paths: each step at times an object, at times anything
    else, at times missing, and each leaf any value."""
    obj: dict[str, Any] = {}
    paths = [*PATHS[kind].values(), ("metadata", "labels"), ("spec", "claimRef", "name"),
             ("spec", "claimRef", "namespace"), ("status", "conditions")]  # fmt: skip
    for path in draw(st.permutations(paths)):
        at: Any = obj
        for depth, step in enumerate(path):
            if not isinstance(at, dict):
                break
            choice = draw(st.integers(0, 9))
            if choice == 0:
                break  # missing
            if choice == 1 or depth == len(path) - 1:
                at.setdefault(step, draw(junk))
                break
            at = at.setdefault(step, {})
    return obj


@settings(max_examples=400)
@given(st.data())
def test_every_fact_is_the_value_at_its_path(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(PATHS)))
    obj = data.draw(objects(kind))
    try:
        facts = facts_of(kind, obj)
    except TypeError:
        # Conditions that are not a list: the object's problem (sources/kube/observe.py
        # quarantines it), never the stream's. Only a truthy non-list reaches here.
        conditions = walk(obj, ("status", "conditions"))
        assert conditions and not isinstance(conditions, list | dict | str)
        return
    for fact, path in PATHS[kind].items():
        got = facts[fact]
        want = text(walk(obj, path))
        assert (got if want != "<json>" or got is None else "<json>") == want, fact
    if kind == "PersistentVolumeClaim":
        labels = walk(obj, ("metadata", "labels"))
        assert (facts["labels"] is None) == (not labels)
    if kind == "PersistentVolume":
        claim = walk(obj, ("spec", "claimRef"))
        name = claim.get("name") if isinstance(claim, dict) else None
        want_ref = f"{claim.get('namespace', '')}/{name}" if name else None
        assert facts["claimRef"] == want_ref
    assert clean_facts(facts) == facts  # plain ASCII names and values go on as they are


def test_a_real_pvc_pv_and_vr() -> None:
    pvc = {
        "metadata": {"name": "data", "namespace": "shop", "labels": {"b": "2", "a": "1"}},
        "spec": {"volumeName": "pvc-1", "storageClassName": "rbd"},
        "status": {"phase": "Bound"},
    }
    assert facts_of("PersistentVolumeClaim", pvc) == {
        "phase": "Bound",
        "volumeName": "pvc-1",
        "storageClassName": "rbd",
        "deletionTimestamp": None,
        "labels": '{"a":"1","b":"2"}',
    }
    pv = {
        "metadata": {"name": "pvc-1", "deletionTimestamp": "2026-11-26T12:00:00Z"},
        "spec": {
            "claimRef": {"namespace": "shop", "name": "data"},
            "csi": {"volumeAttributes": {"imageName": "csi-vol-1", "pool": "replicapool"}},
            "persistentVolumeReclaimPolicy": "Retain",
        },
        "status": {"phase": "Released"},
    }
    assert facts_of("PersistentVolume", pv) == {
        "phase": "Released",
        "claimRef": "shop/data",
        "imageName": "csi-vol-1",
        "pool": "replicapool",
        "clusterID": None,
        "reclaimPolicy": "Retain",
        "deletionTimestamp": "2026-11-26T12:00:00Z",
    }
    vr = {
        "metadata": {"name": "data", "generation": 3},
        "spec": {"replicationState": "primary", "dataSource": {"name": "data"}},
        "status": {
            "state": "Primary",
            "conditions": [
                {"type": "Completed", "status": "True", "reason": "Promoted", "observedGeneration": 3},
                {"type": "Degraded", "status": "True", "observedGeneration": 2},  # stale
                {"type": "Resyncing", "status": "False"},
            ],
        },
    }  # fmt: skip
    assert facts_of("VolumeReplication", vr) == {
        "replicationState": "primary",
        "dataSource": "data",
        "volumeReplicationClass": None,
        "state": "Primary",
        "lastSyncTime": None,
        "deletionTimestamp": None,
        "condition.Completed": "True/Promoted",
        "condition.Resyncing": "False",
    }


def test_clean_facts_makes_names_and_values_storable() -> None:
    facts: dict[Any, Any] = {
        "phase": "Bo\x00und",
        "condition.A\ud800": "x",
        7: 8,
        "ok": "",
        "n": None,
    }
    cleaned = clean_facts(facts)
    assert cleaned == {
        "phase": "Bo\ufffdund",
        "condition.A\ufffd": "x",
        "7": "8",
        "ok": "",
        "n": None,
    }
    assert clean_facts(facts) == cleaned  # names seen before: the same answer
    long = "condition." + "x" * 400
    (name,) = clean_facts({long: "v"})
    assert len(name) <= 330 and name != long
