"""Volume views join objects to volumes as the kind catalogue says (``kinds.Join``)."""

from __future__ import annotations

from dataclasses import replace

from captured_pair import T, k8s, volume

from auditd.config import Config, parse_config
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.views import Correlator, VolumeId
from auditd.sim import objects
from auditd.sources.kube import kinds
from auditd.sources.kube.events import ObjectEvent, Observed
from auditd.sources.kube.kinds import Join, Kind

# A kind the built-in catalogue does not have, joined by the PVC it names in `spec.claim`.
BACKUP = Kind("backup.example.com", "v1", "backups", "Backup", True, False, Join("claim", "pvc"))


def config() -> Config:
    return parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
        }
    )


VOLUME = VolumeId("p", "replicapool", "csi-vol-0001")
OTHER = VolumeId("p", "replicapool", "csi-vol-0002")


def backup(name: str, claim: str | None, kind: str = "ADDED", rv: int = 1) -> ObjectEvent:
    seen = Observed("app", name, f"uid-{name}", str(rv), {"pvc": claim})
    return ObjectEvent("dr1", BACKUP.kind, kind, seen, T)  # type: ignore[arg-type]


def test_a_claim_joined_kind_joins_the_volume_of_the_pvc_it_names_and_moves_with_it() -> None:
    inv = Inventory()
    correlator = Correlator(config(), (*kinds.ALL_KINDS, BACKUP))
    for event in [*volume("dr1"), *volume("dr1", image="csi-vol-0002", ns="other")]:
        correlator.update(inv, inv.apply(event).touched)

    touched = inv.apply(backup("nightly", "data")).touched
    assert correlator.update(inv, touched) == {VOLUME}
    key = ObjectKey("dr1", BACKUP.kind, "app", "nightly")
    side = correlator.view(inv, VOLUME).side("dr1")
    assert side.joined == (key, ObjectKey("dr1", kinds.VR.kind, "app", "data"))
    assert side.vr == ObjectKey("dr1", kinds.VR.kind, "app", "data")  # the VR keeps its place
    assert correlator.volume_of(inv, key) == VOLUME
    assert correlator.view(inv, OTHER).side("dr1").joined == (
        ObjectKey("dr1", kinds.VR.kind, "other", "data"),
    )

    # Naming a PVC no PV claims leaves it unlinked, and the volume it left is re-evaluated.
    touched = inv.apply(backup("nightly", "gone", "MODIFIED", rv=2)).touched
    assert correlator.update(inv, touched) == {VOLUME}
    assert key not in correlator.view(inv, VOLUME).side("dr1").joined
    views = [correlator.view(inv, v) for v in correlator.volumes()]
    assert correlator.unlinked(inv, ["dr1"], views) == {key}


def test_the_built_in_catalogue_joins_ramen_by_namespace_and_a_vr_by_its_claim() -> None:
    inv = Inventory()
    correlator = Correlator(config())
    for event in volume("dr1"):
        correlator.update(inv, inv.apply(event).touched)
    # A Backup is not in the built-in catalogue: it is stored, but joins nothing.
    assert correlator.update(inv, inv.apply(backup("nightly", "data")).touched) == set()
    assert [k.kind for k in correlator.view(inv, VOLUME).side("dr1").joined] == [kinds.VR.kind]
    assert {k.kind for k in kinds.ALL_KINDS if k.joins and k.joins.by == "namespace"} == {
        kinds.VRG.kind,
        kinds.DRPC.kind,
    }


def test_a_namespace_joined_object_that_names_other_namespaces_moves_its_volumes_with_it() -> None:
    """A VRG listing protectedNamespaces covers those, not its own; when the list changes, the
    volumes it left are judged again, and no longer see it."""
    inv = Inventory()
    correlator = Correlator(config())
    for event in [*volume("dr1"), *volume("dr1", image="csi-vol-0002", ns="other")]:
        correlator.update(inv, inv.apply(event).touched)

    def vrg(namespaces: list[str], rv: int, typ: str = "MODIFIED") -> ObjectEvent:
        obj = {"metadata": {"name": "disc", "namespace": "ramen-ops", "resourceVersion": str(rv)},
               "spec": {"protectedNamespaces": namespaces}}  # fmt: skip
        seen = Observed("ramen-ops", "disc", "uid-disc", str(rv),
                        facts_of(kinds.VRG.kind, obj))  # fmt: skip
        return ObjectEvent("dr1", kinds.VRG.kind, typ, seen, T)  # type: ignore[arg-type]

    key = ObjectKey("dr1", kinds.VRG.kind, "ramen-ops", "disc")
    assert correlator.update(inv, inv.apply(vrg(["app"], 1, "ADDED")).touched) == {VOLUME}
    assert key in correlator.view(inv, VOLUME).side("dr1").joined
    assert key not in correlator.view(inv, OTHER).side("dr1").joined
    assert correlator.update(inv, inv.apply(vrg(["other"], 2)).touched) == {VOLUME, OTHER}
    assert key not in correlator.view(inv, VOLUME).side("dr1").joined
    assert key in correlator.view(inv, OTHER).side("dr1").joined


def test_a_pvc_two_pvs_claim_belongs_to_the_one_its_volume_name_names_in_any_order() -> None:
    """A retained PV of an earlier binding (reclaim policy Retain, as Ramen sets it) still
    names the PVC that is now bound to another PV. The PVC, and what names it, belong to
    the PV its volumeName names, whichever PV was seen last: a restart lists them in
    another order and must judge the same volumes."""
    pvc = ObjectKey("dr1", kinds.PVC.kind, "app", "data")
    retained = k8s("dr1", "PersistentVolume", objects.pv("pv-old", "app", "data", "csi-vol-0002"))
    for order in ("retained last", "retained first"):
        inv = Inventory()
        correlator = Correlator(config())
        events = [*volume("dr1"), retained]
        if order == "retained first":
            events = [retained, *events]
        for event in events:
            correlator.update(inv, inv.apply(event).touched)
        assert correlator.volume_of(inv, pvc) == VOLUME, order
        assert correlator.view(inv, VOLUME).side("dr1").pvc == pvc, order
        assert correlator.view(inv, VOLUME).side("dr1").vr is not None, order
        # The retained PV's own volume does not hold a PVC that is bound elsewhere.
        assert correlator.view(inv, OTHER).side("dr1").pvc is None, order
        assert correlator.linked(inv, pvc), order

    # Bound to the retained PV instead (volumeName changed): both volumes are judged again,
    # and the PVC with its VR moves.
    rebound = replace(
        k8s("dr1", "PersistentVolumeClaim", objects.pvc("data", "app", volume="pv-old"), rv=2),
        type="MODIFIED",
    )
    assert correlator.update(inv, inv.apply(rebound).touched) >= {VOLUME, OTHER}
    assert correlator.volume_of(inv, pvc) == OTHER
    assert correlator.view(inv, OTHER).side("dr1").pvc == pvc
    assert correlator.view(inv, VOLUME).side("dr1").pvc is None


def test_a_pv_that_takes_a_claim_over_from_another_moves_the_pvc_and_both_volumes_are_judged() -> (
    None
):
    """The PVC names a PV that arrives after another PV claimed it (a pre-bound PV restored
    by Ramen, say): the claim moves to the named one, and the volume it left is judged again
    (its view no longer holds the PVC), not only the volume it joined."""
    inv = Inventory()
    correlator = Correlator(config())
    pvc = ObjectKey("dr1", kinds.PVC.kind, "app", "data")
    for event in (
        k8s("dr1", "PersistentVolumeClaim", objects.pvc("data", "app", volume="pv-restored")),
        k8s("dr1", "PersistentVolume", objects.pv("pv-first", "app", "data", "csi-vol-0002")),
    ):
        correlator.update(inv, inv.apply(event).touched)
    assert correlator.volume_of(inv, pvc) == OTHER  # the only PV claiming it, for now
    restored = k8s(
        "dr1", "PersistentVolume", objects.pv("pv-restored", "app", "data", "csi-vol-0001")
    )
    assert correlator.update(inv, inv.apply(restored).touched) == {VOLUME, OTHER}
    assert correlator.volume_of(inv, pvc) == VOLUME
    assert correlator.view(inv, OTHER).side("dr1").pvc is None
    # And back: the named PV gone, the claim returns to the other, both judged again.
    gone = replace(
        k8s("dr1", "PersistentVolume", objects.pv("pv-restored", "app", "data", "csi-vol-0001"), 2),
        type="DELETED",
    )
    assert correlator.update(inv, inv.apply(gone).touched) == {VOLUME, OTHER}
    assert correlator.view(inv, OTHER).side("dr1").pvc == pvc


def test_what_no_view_holds_is_what_linked_says_of_each_key() -> None:
    """A pair judged whole finds the objects no view holds from the views it just built (a
    PVC, and what is joined to it by claim, VRs only the side's own): the same keys as
    asking ``linked`` of every PVC and claim-joined object, in each way a key can be left
    out."""
    inv = Inventory()
    correlator = Correlator(config(), (*kinds.ALL_KINDS, BACKUP))
    app = "app"
    events = [
        *volume("dr1"),
        # A retained PV of an earlier binding still naming the claim: its volume holds no PVC.
        k8s("dr1", "PersistentVolume", objects.pv("pv-old", app, "data", "csi-vol-0002")),
        # A second VR of the same PVC: the side's VR is the first by key.
        k8s("dr1", "VolumeReplication", objects.vr("data-2", app, "data")),
        # A VR naming a PVC that is gone, and a PVC whose PV has not arrived.
        k8s("dr1", "VolumeReplication", objects.vr("ghost", app, "ghost")),
        k8s("dr1", "PersistentVolumeClaim", objects.pvc("pending", app, volume="pv-later")),
        backup("nightly", "data"),
        backup("waiting", "pending"),
        # On the peer: the claim's PVC and VR with no PV there (judged against the volume).
        k8s("dr2", "PersistentVolumeClaim", objects.pvc("data", app, volume="pv-x")),
        k8s("dr2", "VolumeReplication", objects.vr("data", app, "data")),
    ]
    for event in events:
        correlator.update(inv, inv.apply(event).touched)
    joined = (kinds.PVC.kind, kinds.VR.kind, BACKUP.kind)
    by_key = {
        k
        for c in ("dr1", "dr2")
        for kind in joined
        for k in inv.keys_of(c, kind)
        if not correlator.linked(inv, k)
    }
    views = [correlator.view(inv, v) for v in sorted(correlator.volumes())]
    assert correlator.unlinked(inv, ["dr1", "dr2"], views) == by_key
    assert by_key == {
        ObjectKey("dr1", kinds.VR.kind, app, "data-2"),
        ObjectKey("dr1", kinds.VR.kind, app, "ghost"),
        ObjectKey("dr1", kinds.PVC.kind, app, "pending"),
        ObjectKey("dr1", BACKUP.kind, app, "waiting"),
        ObjectKey("dr2", kinds.PVC.kind, app, "data"),
        ObjectKey("dr2", kinds.VR.kind, app, "data"),
    }
    # Only the clusters asked about.
    assert {k.cluster for k in correlator.unlinked(inv, ["dr2"], views)} == {"dr2"}
