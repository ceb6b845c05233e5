"""The Kubernetes kinds auditd knows, with the coordinates needed to list and watch them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Site = Literal["dr", "hub"]


@dataclass(frozen=True)
class Join:
    """How an object of a kind belongs to mirrored volumes, for the volume views.

    ``claim``: it names PVCs of its own namespace in the fact ``fact`` (one, as a
    VolumeReplication's ``dataSource``; or several joined by commas, as a VolumeGroupReplication's
    members), so it joins those PVCs' volumes on its cluster. ``namespace``: it covers
    every volume whose PVC lives in its namespace on its cluster, or in the namespaces its
    ``fact`` lists when it lists any (Ramen's VRG and DRPC: an ApplicationSet's DRPC lives in
    the GitOps namespace and names its application's; a discovered application's lists
    ``protectedNamespaces``). ``cluster``: it speaks of whole clusters, so a change to it
    touches every volume of the pairs its cluster serves (Ramen's DRCluster on the hub, a
    VolumeReplicationClass)."""

    by: Literal["claim", "namespace", "cluster"]
    fact: str = ""

    def __post_init__(self) -> None:
        if self.by == "claim" and not self.fact:
            raise ValueError("a claim join needs the fact that names its PVCs")
        if self.by == "cluster" and self.fact:
            raise ValueError("a cluster join reads no fact")

    def claims(self, facts: Mapping[str, str | None]) -> tuple[str, ...]:
        """The PVC names a claim-joined object names in its fact: one name, or several joined
        by commas (which a Kubernetes name never holds)."""
        listed = facts.get(self.fact)
        return tuple(n for n in listed.split(",") if n) if listed else ()

    def covers(self, namespace: str, facts: Mapping[str, str | None]) -> tuple[str, ...]:
        """The namespaces a namespace-joined object of ``namespace`` covers, given its facts."""
        listed = facts.get(self.fact) if self.fact else None
        return tuple(n for n in listed.split(",") if n) if listed else (namespace,)


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    # Built-in or installed by csi-addons on every DR cluster; the rest are optional CRDs.
    required: bool = True
    # None: its objects are audited alone (a PVC and PV make the volume).
    joins: Join | None = None
    # Where it lives: a DR cluster (role primary or secondary), a hub (Ramen's), or both.
    sites: frozenset[Site] = frozenset({"dr"})

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if namespace and self.namespaced:
            return f"{self.group_version_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_version_path}/{self.plural}"


_REPL = "replication.storage.openshift.io"
_RAMEN = "ramendr.openshift.io"

PVC = Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
PV = Kind("", "v1", "persistentvolumes", "PersistentVolume", False)
VR = Kind(
    _REPL,
    "v1alpha1",
    "volumereplications",
    "VolumeReplication",
    True,
    joins=Join("claim", "dataSource"),
)
# A class speaks of every VR naming it on its cluster: its schedulingInterval is what
# rpo-exceeded and lag-disagreement measure against, so a change re-judges the pair.
VRC = Kind(
    _REPL,
    "v1alpha1",
    "volumereplicationclasses",
    "VolumeReplicationClass",
    False,
    joins=Join("cluster"),
)
# The namespaces Ramen says it protects, when it names them (else the object's own).
_BY_NAMESPACE = Join("namespace", "namespaces")
VRG = Kind(
    _RAMEN,
    "v1alpha1",
    "volumereplicationgroups",
    "VolumeReplicationGroup",
    True,
    False,
    _BY_NAMESPACE,
)
# Ramen keeps DRPCs, DRPolicies and DRClusters on its hub. A DRPC is also watched on the DR
# clusters, where a setup without a configured hub (or a test) may keep it.
DRPC = Kind(
    _RAMEN,
    "v1alpha1",
    "drplacementcontrols",
    "DRPlacementControl",
    True,
    False,
    _BY_NAMESPACE,
    frozenset({"dr", "hub"}),
)
_HUB: frozenset[Site] = frozenset({"hub"})
DR_POLICY = Kind(_RAMEN, "v1alpha1", "drpolicies", "DRPolicy", False, False, sites=_HUB)
DR_CLUSTER = Kind(
    _RAMEN, "v1alpha1", "drclusters", "DRCluster", False, False, Join("cluster"), _HUB
)
# Consistency groups (csi-addons): a VGR's members are the PVCs its controller lists in
# status.persistentVolumeClaimsRefList (what its selector matched), exact where a selector is not.
VGR = Kind(
    _REPL,
    "v1alpha1",
    "volumegroupreplications",
    "VolumeGroupReplication",
    True,
    False,
    Join("claim", "members"),
)
VGRC = Kind(
    _REPL, "v1alpha1", "volumegroupreplicationclasses", "VolumeGroupReplicationClass", False, False
)
CEPH_BLOCK_POOL = Kind("ceph.rook.io", "v1", "cephblockpools", "CephBlockPool", True, False)

ALL_KINDS = (PVC, PV, VR, VRC, VGR, VGRC, VRG, DRPC, DR_POLICY, DR_CLUSTER, CEPH_BLOCK_POOL)
BY_NAME = {k.kind: k for k in ALL_KINDS}
# Listed by a one-shot look only (`auditd preflight` asks whether the target has the PVC's
# StorageClass); the daemon does not watch it.
STORAGE_CLASS = Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
LOOKED_AT_KINDS = (*ALL_KINDS, STORAGE_CLASS)


def kinds_for(role: str, catalogue: tuple[Kind, ...] | None = None) -> tuple[Kind, ...]:
    """The kinds watched on a cluster of this role (primary, secondary or hub)."""
    site: Site = "hub" if role == "hub" else "dr"
    return tuple(k for k in (ALL_KINDS if catalogue is None else catalogue) if site in k.sites)
