"""The normalized DR facts of each kind: the only fields whose change is a transition.

Everything else (resourceVersion, managedFields, heartbeat timestamps, annotations) is churn
and never makes a transition. Facts are flat ``str -> str | None`` maps so that a transition is
one row with an old and a new value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from auditd.codec import canonical
from auditd.sources.kube import kinds

Facts = dict[str, str | None]
Obj = dict[str, Any]


def _get(obj: Obj, *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def _map(value: Any) -> Mapping[str, Any]:
    """The value if it is a JSON object, else an empty one: a path through anything else reads
    as absent, as with ``_get``."""
    return value if isinstance(value, dict) else _NOTHING


def _parts(obj: Obj) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]:
    """metadata, spec and status, each looked up once. The kinds of every watch event (PVC, PV,
    VR) read their facts through these rather than ``_get``: a path walked from the top for
    each fact was half of what turning an event into facts cost (bench/watch_scale.py)."""
    top = _map(obj)
    return _map(top.get("metadata")), _map(top.get("spec")), _map(top.get("status"))


def _s(value: Any) -> str | None:
    if type(value) is str:  # nearly every fact: one test
        return value or None
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return canonical(value)


def pvc_facts(obj: Obj) -> Facts:
    meta, spec, status = _parts(obj)
    return {
        "phase": _s(status.get("phase")),
        "volumeName": _s(spec.get("volumeName")),
        "storageClassName": _s(spec.get("storageClassName")),
        "deletionTimestamp": _s(meta.get("deletionTimestamp")),
        # What a label selector (a Ramen VRG's pvcSelector) reads of it; None when unlabelled.
        "labels": _s(meta.get("labels") or None),
    }


def pv_facts(obj: Obj) -> Facts:
    meta, spec, status = _parts(obj)
    claim = _map(spec.get("claimRef"))
    claim_ref = f"{claim.get('namespace', '')}/{claim['name']}" if claim.get("name") else None
    attrs = _map(_map(spec.get("csi")).get("volumeAttributes"))
    return {
        "phase": _s(status.get("phase")),
        "claimRef": claim_ref,
        "imageName": _s(attrs.get("imageName")),
        "pool": _s(attrs.get("pool")),
        "clusterID": _s(attrs.get("clusterID")),
        "reclaimPolicy": _s(spec.get("persistentVolumeReclaimPolicy")),
        "deletionTimestamp": _s(meta.get("deletionTimestamp")),
    }


def _conditions(obj: Obj, facts: Facts) -> None:
    """Each condition type's status and reason; stale ones (older generation) are skipped."""
    meta, _, status = _parts(obj)
    generation = meta.get("generation")
    for cond in status.get("conditions") or []:
        if not isinstance(cond, dict) or not cond.get("type"):
            continue
        observed = cond.get("observedGeneration")
        if generation is not None and observed is not None and observed < generation:
            continue  # describes an older spec; Ramen ignores these too
        facts[f"condition.{cond['type']}"] = _s(
            f"{cond.get('status', '')}/{cond.get('reason', '')}".strip("/")
        )


def vr_facts(obj: Obj) -> Facts:
    meta, spec, status = _parts(obj)
    facts: Facts = {
        "replicationState": _s(spec.get("replicationState")),
        "dataSource": _s(_map(spec.get("dataSource")).get("name")),
        "volumeReplicationClass": _s(spec.get("volumeReplicationClass")),
        "state": _s(status.get("state")),
        "lastSyncTime": _s(status.get("lastSyncTime")),
        "deletionTimestamp": _s(meta.get("deletionTimestamp")),
    }
    _conditions(obj, facts)
    return facts


def vgr_facts(obj: Obj) -> Facts:
    refs = _get(obj, "status", "persistentVolumeClaimsRefList")
    members = sorted(
        {
            ref["name"]
            for ref in (refs if isinstance(refs, list) else [])
            if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"]
        }
    )
    facts: Facts = {
        "replicationState": _s(_get(obj, "spec", "replicationState")),
        "volumeGroupReplicationClassName": _s(_get(obj, "spec", "volumeGroupReplicationClassName")),
        "state": _s(_get(obj, "status", "state")),
        # The PVCs of its namespace it replicates, as its controller resolved the selector.
        "members": ",".join(members) or None,
        "deletionTimestamp": _s(_get(obj, "metadata", "deletionTimestamp")),
    }
    _conditions(obj, facts)
    return facts


def vrc_facts(obj: Obj) -> Facts:
    params = _get(obj, "spec", "parameters") or {}
    if not isinstance(params, dict):
        params = {}
    return {
        "provisioner": _s(_get(obj, "spec", "provisioner")),
        "mirroringMode": _s(params.get("mirroringMode")),
        "schedulingInterval": _s(params.get("schedulingInterval")),
    }


def _namespaces(values: Any) -> str | None:
    """A list of namespace names as one fact (comma-joined, sorted); None when it lists none."""
    if not isinstance(values, list):
        return None
    return ",".join(sorted({v for v in values if isinstance(v, str) and v})) or None


def drpc_facts(obj: Obj) -> Facts:
    facts: Facts = {
        # Where its application's volumes are: the namespaces it protects (a discovered
        # application), else its VRG's as the managed cluster reported it (an ApplicationSet's
        # DRPC lives in the GitOps namespace), else (None) its own.
        "namespaces": _namespaces(_get(obj, "spec", "protectedNamespaces"))
        or _namespaces([_get(obj, "status", "resourceConditions", "resourceMeta", "namespace")]),
        "action": _s(_get(obj, "spec", "action")),
        "preferredCluster": _s(_get(obj, "spec", "preferredCluster")),
        "failoverCluster": _s(_get(obj, "spec", "failoverCluster")),
        "phase": _s(_get(obj, "status", "phase")),
        "progression": _s(_get(obj, "status", "progression")),
        "lastGroupSyncTime": _s(_get(obj, "status", "lastGroupSyncTime")),
    }
    _conditions(obj, facts)
    return facts


def vrg_facts(obj: Obj) -> Facts:
    protected = _get(obj, "status", "protectedPVCs")
    own = _get(obj, "metadata", "namespace")
    facts: Facts = {
        "replicationState": _s(_get(obj, "spec", "replicationState")),
        "state": _s(_get(obj, "status", "state")),
        "lastGroupSyncTime": _s(_get(obj, "status", "lastGroupSyncTime")),
        # Which PVCs of its namespace it is meant to protect (an empty selector: all of them)...
        "pvcSelector": json.dumps(_get(obj, "spec", "pvcSelector") or {}, sort_keys=True),
        # A discovered application's VRG lives in Ramen's ops namespace and lists the
        # namespaces it protects; None: its own.
        "namespaces": _namespaces(_get(obj, "spec", "protectedNamespaces")),
        # ... and those it says it does, as namespace/name ("" when it lists none; None before
        # it reports).
        "protectedPVCs": None
        if not isinstance(protected, list)
        else ",".join(
            sorted(
                f"{p.get('namespace') or own}/{p['name']}"
                for p in protected
                if isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"]
            )
        ),
    }
    _conditions(obj, facts)
    return facts


def drpolicy_facts(obj: Obj) -> Facts:
    clusters = _get(obj, "spec", "drClusters")
    facts: Facts = {
        "drClusters": ",".join(sorted(c for c in clusters if isinstance(c, str)))
        if isinstance(clusters, list)
        else None,
        "schedulingInterval": _s(_get(obj, "spec", "schedulingInterval")),
    }
    _conditions(obj, facts)
    return facts


def drcluster_facts(obj: Obj) -> Facts:
    facts: Facts = {
        "clusterFence": _s(_get(obj, "spec", "clusterFence")),
        "phase": _s(_get(obj, "status", "phase")),
    }
    _conditions(obj, facts)
    return facts


def storageclass_facts(obj: Obj) -> Facts:
    params = _get(obj, "parameters") or {}
    if not isinstance(params, dict):
        params = {}
    return {"provisioner": _s(_get(obj, "provisioner")), "pool": _s(params.get("pool"))}


def cephblockpool_facts(obj: Obj) -> Facts:
    summary = _get(obj, "status", "mirroringStatus", "summary") or {}
    if not isinstance(summary, dict):
        summary = {}
    return {
        "phase": _s(_get(obj, "status", "phase")),
        "mirroring.enabled": _s(_get(obj, "spec", "mirroring", "enabled")),
        "mirroring.mode": _s(_get(obj, "spec", "mirroring", "mode")),
        "mirroring.health": _s(summary.get("health")),
        "mirroring.daemon_health": _s(summary.get("daemon_health")),
        "mirroring.image_health": _s(summary.get("image_health")),
        "mirroring.states": _s(summary.get("states")),
    }


EXTRACTORS: dict[str, Callable[[Obj], Facts]] = {
    kinds.PVC.kind: pvc_facts,
    kinds.PV.kind: pv_facts,
    kinds.VR.kind: vr_facts,
    kinds.VRC.kind: vrc_facts,
    kinds.VGR.kind: vgr_facts,
    # A group class carries the same provisioner and scheduling parameters as a VR class.
    kinds.VGRC.kind: vrc_facts,
    kinds.DRPC.kind: drpc_facts,
    kinds.VRG.kind: vrg_facts,
    kinds.DR_POLICY.kind: drpolicy_facts,
    kinds.DR_CLUSTER.kind: drcluster_facts,
    kinds.CEPH_BLOCK_POOL.kind: cephblockpool_facts,
    kinds.STORAGE_CLASS.kind: storageclass_facts,
}


def facts_of(kind: str, obj: Obj) -> Facts:
    return EXTRACTORS[kind](obj)
