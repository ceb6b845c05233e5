"""Realistic DR objects for the simulated clusters (shapes from the seed repository's DR flow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Obj = dict[str, Any]


def pvc(name: str, namespace: str, volume: str | None = None, phase: str = "Bound") -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
        "storageClassName": "rook-ceph-block",
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        # Labelled as an application's claims are, for a Ramen VRG's pvcSelector to pick.
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": namespace}},
        "spec": spec,
        "status": {"phase": phase},
    }


def storage_class(name: str = "rook-ceph-block", pool: str = "replicapool") -> Obj:
    """The RBD StorageClass the PVCs name, as Rook's example installs it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "rook-ceph.rbd.csi.ceph.com",
        "parameters": {"clusterID": "rook-ceph", "pool": pool},
        "reclaimPolicy": "Delete",
    }


def pv(name: str, claim_ns: str, claim_name: str, image: str, pool: str = "replicapool") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "claimRef": {"namespace": claim_ns, "name": claim_name},
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "rook-ceph-block",
            "csi": {
                "driver": "rook-ceph.rbd.csi.ceph.com",
                "volumeHandle": f"0001-0009-rook-ceph-0000000000000002-{image}",
                "volumeAttributes": {
                    "clusterID": "rook-ceph",
                    "imageName": image,
                    "pool": pool,
                    "journalPool": pool,
                },
            },
        },
        "status": {"phase": "Bound"},
    }


def vr(name: str, namespace: str, pvc_name: str, state: str = "primary") -> Obj:
    return {
        "apiVersion": "replication.storage.openshift.io/v1alpha1",
        "kind": "VolumeReplication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "volumeReplicationClass": "rbd-volumereplicationclass",
            "replicationState": state,
            "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": pvc_name},
            "autoResync": False,
        },
    }


def vrc(name: str = "rbd-volumereplicationclass", interval: str = "1m") -> Obj:
    """The VolumeReplicationClass the VRs name: snapshot mirroring every ``interval``."""
    return {
        "apiVersion": "replication.storage.openshift.io/v1alpha1",
        "kind": "VolumeReplicationClass",
        "metadata": {"name": name},
        "spec": {
            "provisioner": "rook-ceph.rbd.csi.ceph.com",
            "parameters": {"mirroringMode": "snapshot", "schedulingInterval": interval},
        },
    }


def vgr(name: str, namespace: str, members: list[str], state: str = "primary") -> Obj:
    """A csi-addons VolumeGroupReplication whose controller has resolved its selector to
    ``members`` (status.persistentVolumeClaimsRefList)."""
    return {
        "apiVersion": "replication.storage.openshift.io/v1alpha1",
        "kind": "VolumeGroupReplication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicationState": state,
            "volumeGroupReplicationClassName": "rbd-volumegroupreplicationclass",
            "source": {"selector": {"matchLabels": {"app": namespace}}},
        },
        "status": {
            "state": state.capitalize(),
            "persistentVolumeClaimsRefList": [{"name": m} for m in members],
        },
    }


def vrg(name: str, namespace: str, state: str = "primary", protected: Sequence[str] = ()) -> Obj:
    """Ramen's VolumeReplicationGroup for an application (its PVCs: those labelled
    app=NAMESPACE), its data protected, listing ``protected`` as its protected PVCs."""
    conditions = ("DataReady", "DataProtected", "ClusterDataReady", "ClusterDataProtected")
    return {
        "apiVersion": "ramendr.openshift.io/v1alpha1",
        "kind": "VolumeReplicationGroup",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"replicationState": state, "pvcSelector": {"matchLabels": {"app": namespace}}},
        "status": {
            "state": state.capitalize(),
            "conditions": [
                {"type": c, "status": "True", "reason": "Ready", "observedGeneration": 1}
                for c in conditions
            ],
            "protectedPVCs": [
                {"name": claim, "namespace": namespace, "replicationID": {"id": name}}
                for claim in protected
            ],
        },
    }


def drpc(name: str, namespace: str, cluster: str) -> Obj:
    """Ramen's DRPlacementControl on the hub: deployed on ``cluster``, at rest."""
    return {
        "apiVersion": "ramendr.openshift.io/v1alpha1",
        "kind": "DRPlacementControl",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"preferredCluster": cluster, "drPolicyRef": {"name": "dr-policy-1m"}},
        "status": {"phase": "Deployed", "progression": "Completed"},
    }
