"""One view per mirrored volume across both clusters of a pair: what the rules judge.

The key is (pair, pool, image): the PV's CSI volumeAttributes pool + imageName, and the RBD
image of that name that the probes see (its global_id confirms the match across sites). Each
side joins the PV, its PVC (PV claimRef / PVC volumeName), the VR naming that PVC, and the
image's mirror status, and every object of a kind the catalogue says joins a volume
(``kinds.Join``: by the PVC it names, as a VR does, or by the PVC's namespace, as Ramen's VRG and
DRPC do). Volumes seen on one side only, and images with no Kubernetes object, still get a view.

``Correlator`` keeps the reverse indexes incrementally, so a change re-evaluates only the
volumes it touches.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from auditd.config import Config
from auditd.inventory.facts import Facts
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.inventory.rbd_facts import RBD_IMAGE, RBD_POOL
from auditd.inventory.records import ImageRecord
from auditd.sources.kube import kinds
from auditd.sources.kube.health import AUDIT_STREAM, NOT_CURRENT
from auditd.sources.kube.kinds import Kind

PVC, PV, VR = kinds.PVC.kind, kinds.PV.kind, kinds.VR.kind
VRG, DRPC, VGR = kinds.VRG.kind, kinds.DRPC.kind, kinds.VGR.kind
# DRPC phases of an action in progress (Ramen's DRState).
DRPC_MOVING = frozenset({"Initiating", "FailingOver", "Relocating", "WaitForUser"})
# What a site's record says about its peer that contradicts the peer claiming primary.
_PEER_NOT_PRIMARY = frozenset({"remote image demoted", "remote image is not primary"})


_T = TypeVar("_T")


class _Once(Generic[_T]):
    """functools.cached_property without its lock (Python 3.11 takes one lock, shared by every
    instance, on each first read): views are built and read by one thread, thousands a second,
    and each property is read once per view."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.name = func.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value  # shadows this descriptor from now on
        return value


if TYPE_CHECKING:
    from functools import cached_property
else:
    cached_property = _Once


def not_current(inventory: Inventory, cluster: str) -> bool:
    """A watch stream of this cluster is listing for the first time, reconnecting or blind:
    what auditd holds of its objects is partial or last-known, not current."""
    return any(
        inventory.objects[k].facts.get("state") in NOT_CURRENT
        for k in inventory.keys_of(cluster, AUDIT_STREAM)
    )


def first_listing(inventory: Inventory, cluster: str) -> bool:
    """A watch stream of this cluster has not yet handed over its first list in this process.
    Until it has, the cluster is not current (``not_current``), and the moment it has, the
    cluster's ``surroundings`` change: every volume of its pairs is judged again then."""
    return any(
        inventory.objects[k].facts.get("state") == "listing"
        for k in inventory.keys_of(cluster, AUDIT_STREAM)
    )


def surroundings(inventory: Inventory, cluster: str) -> tuple[object, ...]:
    """What every view of a volume reads of its cluster beyond the volume's own objects and
    image records: whether the cluster's watch streams are current, and of each pool whether
    its probe answers, since when it fails (a window's words) and how far the site's clock is
    (the lag rules). When this changes, every volume of the pair is judged again. A stream's or
    pool's other facts are only their own rules' business: a pool's state counts move with
    every image created or switched, and a pair of 10,000 volumes takes 0.7 s to judge."""
    clocks = inventory.records.clocks
    pools = []
    for key in sorted(inventory.keys_of(cluster, RBD_POOL)):
        facts = inventory.objects[key].facts
        pools.append(
            (
                key.name,
                facts.get("probe"),
                facts.get("probe_failing_since"),
                facts.get("clock_offset"),
                clocks.measured(cluster, key.name),
            )
        )
    return (not_current(inventory, cluster), tuple(pools))


class VolumeId(NamedTuple):
    # A tuple, not a dataclass: thousands are hashed, compared and sorted per evaluation.
    pair: str
    pool: str
    image: str

    def __str__(self) -> str:
        return f"{self.pair}/{self.pool}/{self.image}"


@dataclass(frozen=True)
class Side:
    """One cluster's part of a volume. Immutable, so derived values are computed once
    (cached_property writes the instance __dict__ directly, which frozen allows)."""

    cluster: str
    configured_role: str
    pvc: ObjectKey | None
    pv: ObjectKey | None
    vr: ObjectKey | None  # the first joined VolumeReplication
    image: Facts | None  # RbdImage facts, None when the probe does not list it
    vrg: ObjectKey | None  # the first joined VolumeReplicationGroup (Ramen), if any
    pool_probe: str | None  # ok | failing | None (never probed / no ceph access)
    # A watch stream of this cluster is blind or reconnecting: its objects here are last-known,
    # not current, and never count as present (or absent) against the peer.
    blind: bool
    record: ImageRecord | None = None  # when this site's rbd-mirror wrote its status, and more
    # Every object joined to this side's PVC through the kind catalogue (VR, VRG, DRPC, and any
    # kind added with a Join), in key order.
    joined: tuple[ObjectKey, ...] = ()
    # A PVC here of the volume's claim (the peer's PVC's namespace/name) that no PV of this
    # side holds: one left Terminating after its PV was deleted, or one whose PV has not
    # arrived. The rules judge it against this volume (from its key); a window's old side is
    # not clean while it is here.
    unlinked_pvc: ObjectKey | None = None

    @cached_property
    def group(self) -> ObjectKey | None:
        """The VolumeGroupReplication (csi-addons consistency group) listing this PVC, if any."""
        return next((k for k in self.joined if k.kind == VGR), None)

    @cached_property
    def replicated_by(self) -> ObjectKey | None:
        """What drives this side's replication: its VolumeReplication, else its group."""
        return self.vr or self.group

    @cached_property
    def storage_known(self) -> bool:
        return self.pool_probe == "ok"

    @cached_property
    def primary(self) -> bool | None:
        """Storage truth: is this side's image primary? None when unknown."""
        if not self.storage_known or self.image is None:
            return None
        return {"true": True, "false": False}.get(self.image.get("primary") or "")


@dataclass(frozen=True)
class VolumeView:
    id: VolumeId
    sides: tuple[Side, Side]
    # Ramen DRPlacementControl phases for the volume's namespace (on any watched cluster, its
    # pair's hub included), and those DRPCs.
    drpc_phases: tuple[str, ...] = ()
    drpcs: tuple[ObjectKey, ...] = ()

    def side(self, cluster: str) -> Side:
        a, b = self.sides
        if a.cluster == cluster:
            return a
        if b.cluster == cluster:
            return b
        raise KeyError(f"{cluster} is not a side of {self.id}")

    def peer(self, cluster: str) -> Side:
        a, b = self.sides
        return b if a.cluster == cluster else a

    @cached_property
    def confirmed(self) -> bool:
        """The same image on both sites: equal RBD global_ids where both sites list it. Two
        images that merely share a name say nothing about each other."""
        ids = {(s.image or {}).get("global_id") for s in self.sides if s.image}
        ids.discard(None)
        return len(ids) <= 1

    @cached_property
    def storage_known(self) -> bool:
        return self.confirmed and all(s.storage_known for s in self.sides)

    @cached_property
    def settled(self) -> bool:
        """Both sites' records can be believed together.

        After a demote or promote the records lag the truth by up to one rbd-mirror refresh:
        the demoted side still says "local image is primary", the promoted one may still say
        "remote image demoted". So a record claiming primary counts only if it was written
        after the peer last became primary, and only while the peer does not say of it that it
        is not primary. (A record claiming non-primary never outlives a promotion of its
        own site unnoticed: until rewritten it leaves both sides non-primary, a window.)"""
        if not self.confirmed:
            return False
        for s in self.sides:
            if s.image is None:
                continue
            if s.record is None or s.record.updated_at is None:
                return False
            if s.primary is not True:
                continue
            peer = self.peer(s.cluster)
            promoted = (
                peer.record.role_changed_at
                if peer.record is not None and peer.record.primary is True
                else None
            )
            if promoted is not None and s.record.updated_at <= promoted:
                return False  # written before the peer became primary: maybe its last word
            if (peer.image or {}).get("description") in _PEER_NOT_PRIMARY:
                return False
        return True

    @cached_property
    def primary_cluster(self) -> str | None:
        """Which cluster's image is primary (storage truth, from settled records); None if
        unknown, ambiguous or not settled yet."""
        if not self.settled:
            return None
        primaries = [s.cluster for s in self.sides if s.primary is True]
        return primaries[0] if len(primaries) == 1 else None

    @cached_property
    def both_primary(self) -> bool:
        """Both records claim primary (believable together only when ``settled``)."""
        return self.confirmed and all(s.primary is True for s in self.sides)

    @cached_property
    def synced_at(self) -> datetime | None:
        """The secondary's last synced snapshot: the storage truth of lag. Never older than
        the moment that site stopped being primary (it held current data until then)."""
        primary = self.primary_cluster
        if primary is None:
            return None
        record = self.peer(primary).record
        return record.current_through if record is not None else None

    @cached_property
    def in_transition(self) -> bool:
        """A DR window: neither side primary, both known (an orderly demote before promote)."""
        return self.confirmed and all(s.primary is False for s in self.sides)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _drop(index: dict[_K, set[_V]], key: _K, member: _V) -> None:
    """Remove ``member`` from ``index[key]``, and the key with its last member."""
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]


def _held(keys: Collection[ObjectKey], inventory: Inventory) -> tuple[ObjectKey, ...]:
    """The keys the inventory holds, in order. Most joins are one VR or none: no sort for
    them (this is built for every view of every evaluation)."""
    if not keys:
        return ()
    if len(keys) == 1:
        (key,) = keys
        return (key,) if key in inventory.objects else ()
    return tuple(sorted(k for k in keys if k in inventory.objects))


class Correlator:
    """Reverse indexes from objects to volumes, maintained from the keys each batch touched."""

    def __init__(self, config: Config, catalogue: Iterable[Kind] | None = None) -> None:
        self.config = config
        # Read at construction, not import, so that the one catalogue is what every engine sees.
        catalogue = kinds.ALL_KINDS if catalogue is None else tuple(catalogue)
        # kind -> its claim join (the fact naming the PVCs it joins).
        self._claim_joins = {
            k.kind: k.joins for k in catalogue if k.joins and k.joins.by == "claim"
        }
        # kind -> its namespace join (which may name the namespaces it covers in a fact).
        self._namespace_joins = {
            k.kind: k.joins for k in catalogue if k.joins and k.joins.by == "namespace"
        }
        self._cluster_kinds = frozenset(
            k.kind for k in catalogue if k.joins and k.joins.by == "cluster"
        )
        self._pair_of: dict[str, str] = {c: p.name for p in config.pairs for c in p.clusters}
        # A DR cluster's pair, or every pair a hub serves: where a namespace-joined object
        # (a VRG on a DR cluster, a DRPC on the hub) finds its volumes.
        self._pairs_of: dict[str, tuple[str, ...]] = {
            c.name: tuple(p.name for p in config.pairs_of(c.name)) for c in config.clusters
        }
        self._pools = {p.name: set(p.pools) for p in config.pairs}
        # A DR cluster's peers: the other clusters of its pair.
        self._peers: dict[str, tuple[str, ...]] = {
            c: tuple(o for o in p.clusters if o != c) for p in config.pairs for c in p.clusters
        }
        self._pv_volume: dict[ObjectKey, VolumeId] = {}
        self._volume_pvs: dict[VolumeId, set[ObjectKey]] = {}
        self._images: dict[VolumeId, set[ObjectKey]] = {}
        # (cluster, "namespace/pvc") -> the PVs claiming it (more than one where a retained PV
        # of an earlier binding still names it; ``_claimant`` says which one the PVC is), and
        # the objects naming that PVC.
        self._pvs_by_claim: dict[tuple[str, str], set[ObjectKey]] = {}
        self._claim_of_pv: dict[ObjectKey, tuple[str, str]] = {}
        self._by_claim: dict[tuple[str, str], set[ObjectKey]] = {}
        self._claims_of: dict[ObjectKey, tuple[tuple[str, str], ...]] = {}
        # (pair, namespace) -> volumes whose PV claims a PVC there: what a namespace join touches
        # (until the volume is gone: no PV, no image), and the reverse.
        self._ns_volumes: dict[tuple[str, str], set[VolumeId]] = {}
        self._namespaces_of: dict[VolumeId, set[tuple[str, str]]] = {}
        # Volumes that lost their last PV and image, for the engine to forget once judged, and
        # the objects they were members of (drain_left).
        self._gone: set[VolumeId] = set()
        self._left: set[ObjectKey] = set()
        # (cluster, namespace) -> the namespace-joined objects covering it, and the reverse.
        self._covering: dict[tuple[str, str], set[ObjectKey]] = {}
        self._covers_of: dict[ObjectKey, tuple[str, ...]] = {}

    def volume_of_image(self, cluster: str, pool: str, image: str) -> VolumeId | None:
        pair = self._pair_of.get(cluster)
        if pair is None or pool not in self._pools.get(pair, ()):
            return None
        return VolumeId(pair, pool, image)

    def _volume_of_pv(self, key: ObjectKey, facts: Facts) -> VolumeId | None:
        pair = self._pair_of.get(key.cluster)
        pool, image = facts.get("pool"), facts.get("imageName")
        if pair is None or not pool or not image:
            return None
        return VolumeId(pair, pool, image)

    def update(
        self,
        inventory: Inventory,
        touched: Iterable[ObjectKey],
        reach: dict[ObjectKey, set[VolumeId]] | None = None,
    ) -> set[VolumeId]:
        """Refresh the indexes for these keys; return every volume they affect (and, into
        ``reach``, the volumes each key affects)."""
        affected: set[VolumeId] = set()
        whole_pairs: dict[str, list[ObjectKey]] = {}
        for key in touched:
            hit: set[VolumeId] = set()
            self._update(inventory, key, hit, whole_pairs)
            affected |= hit
            if reach is not None:
                reach[key] = hit
        if whole_pairs:  # expanded once per batch, not once per touched key
            for pair, keys in whole_pairs.items():
                expanded = self.volumes_of_pairs({pair})
                affected |= expanded
                if reach is not None:
                    for key in keys:
                        reach[key] |= expanded
        for vid in affected:
            if vid not in self._volume_pvs and vid not in self._images:
                # Gone from both clusters and both sites: a daemon that runs for months keeps
                # no trace of every volume it ever saw. What it was a member of (its
                # namespace's VRG or DRPC) is judged without it.
                self._left |= self.joining(inventory, vid)
                for at in self._namespaces_of.pop(vid, ()):
                    _drop(self._ns_volumes, at, vid)
                self._gone.add(vid)
        return affected

    def _update(
        self,
        inventory: Inventory,
        key: ObjectKey,
        hit: set[VolumeId],
        whole_pairs: dict[str, list[ObjectKey]],
    ) -> None:
        """One key's part of ``update``: its volumes into ``hit``; a key about whole clusters
        into ``whole_pairs`` (by pair), expanded once for the batch."""
        known = inventory.objects.get(key)
        if key.kind == PV:
            old = self._pv_volume.pop(key, None)
            if old is not None:
                _drop(self._volume_pvs, old, key)
                hit.add(old)
            current = self._volume_of_pv(key, known.facts) if known else None
            if current is not None:
                self._pv_volume[key] = current
                self._volume_pvs.setdefault(current, set()).add(key)
                hit.add(current)
            # A PV leaving or joining a claim another PV also names may change which of them
            # the claim belongs to: the claimant's volume before and after is judged too.
            old_claim = self._claim_of_pv.pop(key, None)
            if old_claim is not None:
                before = self._claimant(inventory, old_claim)
                _drop(self._pvs_by_claim, old_claim, key)
                hit |= self._volumes_of(before, self._claimant(inventory, old_claim))
            claim_ref = known.facts.get("claimRef") if known else None
            if claim_ref:
                claim = (key.cluster, claim_ref)
                self._claim_of_pv[key] = claim
                before = self._claimant(inventory, claim)
                self._pvs_by_claim.setdefault(claim, set()).add(key)
                hit |= self._volumes_of(before, self._claimant(inventory, claim))
                if current is not None:
                    at = (current.pair, claim_ref.split("/", 1)[0])
                    self._ns_volumes.setdefault(at, set()).add(current)
                    self._namespaces_of.setdefault(current, set()).add(at)
        elif key.kind == RBD_IMAGE:
            pair = self._pair_of.get(key.cluster)
            if pair is not None and key.namespace in self._pools.get(pair, ()):
                vid = VolumeId(pair, key.namespace, key.name)
                if known is None:
                    _drop(self._images, vid, key)
                else:
                    self._images.setdefault(vid, set()).add(key)
                hit.add(vid)
        elif key.kind == PVC:
            # As for a claim-joined object below, for its one name, spelled out: every watch
            # event of a PVC comes here. Its volumeName may now name another of the PVs
            # claiming it: each one's volume is judged again, the one it left and the one it
            # joined; then its own volume, and the peer's volume of the same claim (held by
            # no view of its own cluster, it is judged against that one).
            claimants = self._pvs_by_claim.get((key.cluster, f"{key.namespace}/{key.name}"))
            if claimants and len(claimants) > 1:
                hit |= self._volumes_of(*claimants)
            own = self._volume_of_pvc(inventory, key.cluster, key.namespace, key.name)
            peer = self._peer_volume(inventory, key.cluster, key.namespace, key.name)
            hit.update(v for v in (own, peer) if v is not None)
        elif key.kind in self._claim_joins:
            # It was deleted or names other claims now: the volumes it named are affected too.
            for was in self._claims_of.get(key, ()):
                pv = self._claimant(inventory, was)
                if pv is not None and pv in self._pv_volume:
                    hit.add(self._pv_volume[pv])
            self._index_claim(key, known.facts if known else None)
            hit |= self.joined_volumes(inventory, key)
            # Held by no view of its own cluster, it is judged against the volume of the same
            # claim on the peer (``peer_claim_volume``): that view is built for it.
            peer = self.peer_claim_volume(inventory, key)
            if peer is not None:
                hit.add(peer)
        elif key.kind in self._namespace_joins:
            # The namespaces it covered before are affected too (it moved, or is gone).
            hit |= self.joined_volumes(inventory, key)
            self._index_covers(key, known.facts if known else None)
            hit |= self.joined_volumes(inventory, key)
        elif key.kind in self._cluster_kinds:
            # An object about whole clusters touches every volume of that cluster (of a hub:
            # of every pair it serves). A pool or a stream touches none by itself: what the
            # views read of them is ``surroundings``, which the engine follows.
            for pair in self._pairs_of.get(key.cluster, ()):
                whole_pairs.setdefault(pair, []).append(key)

    def _claimant(self, inventory: Inventory, claim: tuple[str, str]) -> ObjectKey | None:
        """The PV a claim (cluster, "namespace/pvc") belongs to: the one claiming it, or, where
        several do (a retained PV of an earlier binding still names the PVC), the one the
        PVC's volumeName names, else the first by name: never the last one seen, so that a
        restart that lists them in another order judges the same volumes."""
        pvs = self._pvs_by_claim.get(claim)
        if not pvs:
            return None
        if len(pvs) == 1:
            return next(iter(pvs))
        cluster, ref = claim
        namespace, _, name = ref.partition("/")
        pvc = inventory.objects.get(ObjectKey(cluster, PVC, namespace, name))
        volume_name = pvc.facts.get("volumeName") if pvc else None
        named = ObjectKey(cluster, PV, "", volume_name) if volume_name else None
        return named if named in pvs else min(pvs)

    def _volumes_of(self, *pvs: ObjectKey | None) -> set[VolumeId]:
        return {self._pv_volume[pv] for pv in pvs if pv is not None and pv in self._pv_volume}

    def drain_left(self) -> set[ObjectKey]:
        """The objects a volume gone since the last drain was a member of: no longer reached
        through it, and judged on their members without it."""
        out, self._left = self._left, set()
        return out

    def drain_gone(self) -> set[VolumeId]:
        """The volumes gone since the last drain (after their last verdicts were made), and
        still gone: one that came back since is a volume again."""
        out, self._gone = self._gone, set()
        return {v for v in out if v not in self._volume_pvs and v not in self._images}

    def _index_claim(self, key: ObjectKey, facts: Facts | None) -> None:
        for old in self._claims_of.pop(key, ()):
            _drop(self._by_claim, old, key)
        names = self._claim_joins[key.kind].claims(facts) if facts else ()
        if names:
            claims = tuple((key.cluster, f"{key.namespace}/{n}") for n in names)
            self._claims_of[key] = claims
            for claim in claims:
                self._by_claim.setdefault(claim, set()).add(key)

    def _index_covers(self, key: ObjectKey, facts: Facts | None) -> None:
        for ns in self._covers_of.pop(key, ()):
            _drop(self._covering, (key.cluster, ns), key)
        if facts is not None:
            covers = self._namespace_joins[key.kind].covers(key.namespace, facts)
            self._covers_of[key] = covers
            for ns in covers:
                self._covering.setdefault((key.cluster, ns), set()).add(key)

    def joined_volumes(self, inventory: Inventory, key: ObjectKey) -> set[VolumeId]:
        """The volumes an object joins: those of the PVCs a PVC or claim-joined object names
        (linked on its own cluster, else through the PVC of the same name on the peer), or
        every live volume with a PVC in the namespaces a namespace-joined object covers."""
        if key.kind in self._namespace_joins:
            return {
                v
                for pair in self._pairs_of.get(key.cluster, ())
                for ns in self._covers_of.get(key, ())
                for v in self._ns_volumes.get((pair, ns), ())
                if self._volume_pvs.get(v) or self._images.get(v)
            }
        out: set[VolumeId] = set()
        for name in self._claim_names(inventory, key):
            vid = self._volume_of_pvc(
                inventory, key.cluster, key.namespace, name
            ) or self._peer_volume(inventory, key.cluster, key.namespace, name)
            if vid is not None:
                out.add(vid)
        return out

    def joining(self, inventory: Inventory, vid: VolumeId) -> set[ObjectKey]:
        """The objects whose members include this volume (``joined_volumes`` the other way):
        those covering a namespace it is in, on its pair's clusters or hub, and those naming
        its claim, but its own VRs. A view holds only what joins the PVC it holds: a volume
        whose PVC is gone is still a member of its namespace's VRG, and that VRG is judged
        when it changes."""
        pair = self.config.pair_named(vid.pair)
        clusters = (*pair.clusters, *([pair.hub] if pair.hub else []))
        found = {
            k
            for _, ns in self._namespaces_of.get(vid, ())
            for c in clusters
            for k in self._covering.get((c, ns), ())
        }
        for _, ref in self._owned_claims(inventory, vid):
            found |= {
                k
                for c in pair.clusters
                for k in self._by_claim.get((c, ref), ())
                if k.kind != VR and vid in self.joined_volumes(inventory, k)
            }
        return {k for k in found if k in inventory.objects}

    def _owned_claims(self, inventory: Inventory, vid: VolumeId) -> list[tuple[str, str]]:
        """The claims (cluster, "namespace/pvc") this volume's PVs own: not one a retained PV
        of an earlier binding still names while it belongs to another PV (``_claimant``)."""
        return [
            claim
            for pv in self._volume_pvs.get(vid, ())
            if (claim := self._claim_of_pv.get(pv)) is not None
            and self._claimant(inventory, claim) == pv
        ]

    def _claim_names(self, inventory: Inventory, key: ObjectKey) -> tuple[str, ...]:
        """The PVC's own name, or the names of the PVCs a claim-joined object names (one for a
        VR, a group's members for a VolumeGroupReplication)."""
        if key.kind == PVC:
            return (key.name,)
        join = self._claim_joins.get(key.kind)
        known = inventory.objects.get(key) if join else None
        return join.claims(known.facts) if known and join else ()

    def _volume_of_pvc(
        self, inventory: Inventory, cluster: str, namespace: str, pvc_name: str
    ) -> VolumeId | None:
        """Through the PV that claims it (by claimRef, which also finds it when the PVC was
        just deleted), else by the PVC's volumeName."""
        pv = self._claimant(inventory, (cluster, f"{namespace}/{pvc_name}"))
        if pv is None:
            pvc = inventory.objects.get(ObjectKey(cluster, PVC, namespace, pvc_name))
            volume_name = pvc.facts.get("volumeName") if pvc else None
            pv = ObjectKey(cluster, PV, "", volume_name) if volume_name else None
        return self._pv_volume.get(pv) if pv is not None else None

    def _volume_of_claim(self, inventory: Inventory, key: ObjectKey) -> VolumeId | None:
        """The volume of a PVC, or of the first PVC a claim-joined object names that has one."""
        for name in self._claim_names(inventory, key):
            vid = self._volume_of_pvc(inventory, key.cluster, key.namespace, name)
            if vid is not None:
                return vid
        return None

    def unlinked(
        self, inventory: Inventory, clusters: Iterable[str], views: Iterable[VolumeView]
    ) -> set[ObjectKey]:
        """The PVCs and claim-joined objects of these clusters that no view holds (a PVC whose
        PV has not arrived or claims another, a VR naming such a PVC or one gone): a
        whole-pair re-evaluation reaches them only through their keys, not through any view.

        ``views``: the views of every volume of these clusters' pairs, built on the indexes as
        they are now. What they hold is what ``linked`` says of each key: a side's PVC, and of
        the objects joined to it those of a claim-joined kind, of VRs only the side's own."""
        joins = self._claim_joins
        held: set[ObjectKey] = set()
        for view in views:
            for side in view.sides:
                if side.pvc is not None:
                    held.add(side.pvc)
                    held.update(
                        k for k in side.joined if k.kind in joins and (k.kind != VR or k == side.vr)
                    )
        return {
            key
            for cluster in clusters
            for kind in (PVC, *joins)
            for key in inventory.keys_of(cluster, kind)
            if key not in held
        }

    def volume_of(self, inventory: Inventory, key: ObjectKey) -> VolumeId | None:
        """The volume a PVC, PV or claim-joined object (a VR) belongs to, as far as the indexes
        link it now."""
        if key.kind == PV:
            return self._pv_volume.get(key)
        if key.kind == PVC or key.kind in self._claim_joins:
            return self._volume_of_claim(inventory, key) or self.peer_claim_volume(inventory, key)
        return None

    def linked(self, inventory: Inventory, key: ObjectKey) -> bool:
        """Is this PVC, PV or claim-joined object in its own cluster's side of a volume's view
        (``view``), and so judged with that view whenever the volume is judged? One that is
        not (a PVC whose PV claims another or is gone, a VR whose PVC is gone) is judged only
        through its key, by every rule, whatever changed (rules/narrow.py)."""
        if key.kind == PV:
            vid = self._pv_volume.get(key)
            return vid is not None and self._side_pv(inventory, vid, key.cluster) == key
        if key.kind == PVC:
            return self._held_pv(inventory, key) is not None
        for name in self._claim_names(inventory, key):
            pvc = ObjectKey(key.cluster, PVC, key.namespace, name)
            if self._held_pv(inventory, pvc) is None:
                continue
            # The side holds every object joined to its PVC, and the first VR as its VR.
            joined = self._joined(inventory, pvc)
            if key in joined and (key.kind != VR or next(k for k in joined if k.kind == VR) == key):
                return True
        return False

    def _held_pv(self, inventory: Inventory, pvc: ObjectKey) -> ObjectKey | None:
        """The PV through which this PVC is in its own cluster's side of its volume's view:
        the PV its claim belongs to, if the PVC is held and that PV is the side's. None if the
        PVC is in no view of its cluster."""
        pv = self._claimant(inventory, (pvc.cluster, f"{pvc.namespace}/{pvc.name}"))
        vid = self._pv_volume.get(pv) if pv is not None else None
        if (
            vid is None
            or pvc not in inventory.objects
            or self._side_pv(inventory, vid, pvc.cluster) != pv
        ):
            return None
        return pv

    def _side_pv(self, inventory: Inventory, vid: VolumeId, cluster: str) -> ObjectKey | None:
        """The PV a volume's view holds for this cluster: its only one there, else the one its
        claim belongs to (``_claimant``), else the first by name (never the set's order,
        which differs from one process to the next)."""
        first: ObjectKey | None = None
        for k in self._volume_pvs.get(vid, ()):
            if k.cluster == cluster:
                if first is not None:
                    break  # two here: decided below
                first = k
        else:
            return first  # the common case: one PV, or none, on this cluster
        here = [k for k in self._volume_pvs[vid] if k.cluster == cluster]
        owning = [
            k
            for k in here
            if (claim := self._claim_of_pv.get(k)) is not None
            and self._claimant(inventory, claim) == k
        ]
        return min(owning or here)

    def peer_claim_volume(self, inventory: Inventory, key: ObjectKey) -> VolumeId | None:
        """A PVC (or a VR naming one) with no PV link of its own yet: the volume whose PVC of
        the same namespace/name lives on the peer cluster. DR keeps an application's claim
        names across sites, so this is the same volume, seen from the other side."""
        for name in self._claim_names(inventory, key):
            vid = self._peer_volume(inventory, key.cluster, key.namespace, name)
            if vid is not None:
                return vid
        return None

    def holding_claims(self, inventory: Inventory) -> frozenset[str]:
        """The clusters holding any PVC or object naming one: where ``judged_against`` looks.
        In steady state that is the primaries only (the invariant auditd audits)."""
        kinds = (PVC, *self._claim_joins)
        return frozenset(c for c in self._peers if any(inventory.holds(c, kind) for kind in kinds))

    def judged_against(
        self, inventory: Inventory, vid: VolumeId, holding: Collection[str]
    ) -> set[ObjectKey]:
        """The objects judged against this volume from its peer cluster: a PVC, or an object
        naming one, no view of its own cluster holds (its PV is gone, or claims another
        claim), whose claim of the same namespace/name is this volume's on the other side
        (``peer_claim_volume``). Judged whenever the volume is, or a PVC judged secondary
        stays so after the volume's switch made its cluster primary. Asked of every volume
        of every batch, and almost always nothing: only peers ``holding`` claims are looked
        at (``holding_claims``, asked once per evaluation)."""
        out: set[ObjectKey] = set()
        for pv in self._volume_pvs.get(vid, ()):
            if any(peer in holding for peer in self._peers.get(pv.cluster, ())):
                break
        else:
            # No peer of its PVs' clusters holds a claim (steady state: the secondary holds
            # none), so none of its owned claims is looked up: that was a tenth of the rules'
            # time a watch event (bench/rules_eval.py).
            return out
        for cluster, ref in self._owned_claims(inventory, vid):
            for peer in self._peers.get(cluster, ()):
                if peer not in holding:
                    continue
                namespace, _, name = ref.partition("/")
                candidates = set(self._by_claim.get((peer, ref), ()))
                if (pvc := ObjectKey(peer, PVC, namespace, name)) in inventory.objects:
                    candidates.add(pvc)
                out |= {
                    k
                    for k in candidates
                    if self.peer_claim_volume(inventory, k) == vid and not self.linked(inventory, k)
                }
        return out

    def _peer_volume(
        self, inventory: Inventory, cluster: str, namespace: str, pvc_name: str
    ) -> VolumeId | None:
        for peer in self._peers.get(cluster, ()):
            pv = self._claimant(inventory, (peer, f"{namespace}/{pvc_name}"))
            if pv is not None and pv in self._pv_volume:
                return self._pv_volume[pv]
        return None

    def volumes(self) -> set[VolumeId]:
        return self._volume_pvs.keys() | self._images.keys()

    def volumes_of_pairs(self, pairs: Collection[str]) -> set[VolumeId]:
        if not pairs:
            return set()  # most evaluations: not a scan of every volume for nothing
        return {v for v in self.volumes() if v.pair in pairs}

    def view(
        self, inventory: Inventory, vid: VolumeId, blind: Mapping[str, bool] | None = None
    ) -> VolumeView:
        """``blind``: which clusters are not current, when the caller has asked once for many
        views (else asked here, per side)."""
        pair = self.config.pair_named(vid.pair)
        sides = []
        for cluster in pair.clusters:
            pv = self._side_pv(inventory, vid, cluster)
            pvc = None
            if pv is not None:
                claim = inventory.objects[pv].facts.get("claimRef")
                if claim and "/" in claim and self._claimant(inventory, (cluster, claim)) == pv:
                    ns, name = claim.split("/", 1)
                    candidate = ObjectKey(cluster, PVC, ns, name)
                    pvc = candidate if candidate in inventory.objects else None
            joined = self._joined(inventory, pvc) if pvc is not None else ()
            image = inventory.objects.get(ObjectKey(cluster, RBD_IMAGE, vid.pool, vid.image))
            pool = inventory.objects.get(ObjectKey(cluster, RBD_POOL, "", vid.pool))
            side_blind = (
                blind[cluster]
                if blind is not None and cluster in blind
                else not_current(inventory, cluster)
            )
            sides.append(
                Side(
                    cluster=cluster,
                    configured_role=self.config.cluster(cluster).role,
                    pvc=pvc,
                    pv=pv,
                    vr=next((k for k in joined if k.kind == VR), None),
                    image=image.facts if image else None,
                    vrg=next((k for k in joined if k.kind == VRG), None),
                    pool_probe=pool.facts.get("probe") if pool else None,
                    blind=side_blind,
                    record=inventory.records.get(cluster, vid.pool, vid.image),
                    joined=joined,
                )
            )
        for i, side in enumerate(sides):
            other = sides[1 - i].pvc
            if side.pvc is None and other is not None:
                stray = ObjectKey(side.cluster, PVC, other.namespace, other.name)
                if stray in inventory.objects and not self.linked(inventory, stray):
                    sides[i] = replace(side, unlinked_pvc=stray)
        namespaces = {s.pvc.namespace for s in sides if s.pvc is not None}
        if not self._covering or not namespaces:  # no Ramen here: nothing to look for
            return VolumeView(vid, (sides[0], sides[1]))
        drpcs = tuple(
            sorted(
                {
                    k
                    for c in (*pair.clusters, *([pair.hub] if pair.hub else []))
                    for ns in namespaces
                    for k in self._covering.get((c, ns), ())
                    if k.kind == DRPC and k in inventory.objects
                }
            )
        )
        phases = tuple(
            sorted(
                str(phase)
                for k in drpcs
                if (phase := inventory.objects[k].facts.get("phase")) is not None
            )
        )
        return VolumeView(vid, (sides[0], sides[1]), phases, drpcs)

    def _joined(self, inventory: Inventory, pvc: ObjectKey) -> tuple[ObjectKey, ...]:
        """The objects of the PVC's cluster that name it, then those covering its namespace."""
        named = self._by_claim.get((pvc.cluster, f"{pvc.namespace}/{pvc.name}"), ())
        covering = self._covering.get((pvc.cluster, pvc.namespace), ())
        return (*_held(named, inventory), *_held(covering, inventory))
