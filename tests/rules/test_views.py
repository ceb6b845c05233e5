"""Volume views join objects to volumes as the kind catalogue says (``kinds.Join``)."""

from __future__ import annotations

from captured_pair import T, volume

from auditd.config import Config, parse_config
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.views import Correlator, VolumeId
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
    assert correlator.unlinked(inv, ["dr1"]) == [key]


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
