"""Ramen's VolumeReplicationGroup conditions, read where the VRG lives, on the real captures."""

from __future__ import annotations

from typing import Any

from captured_pair import T, judge_all, k8s, lost_watch, probe, volume

from auditd.config import Config, parse_config
from auditd.rules.model import UNKNOWN, Finding

VRG = "dr1/VolumeReplicationGroup/app/app-vrg"
HEALTHY = [probe("dr1", "healthy"), probe("dr2", "healthy")]
PROTECTED = {"DataReady": "True", "DataProtected": "True", "ClusterDataProtected": "True"}


def config(ramen_name: str | None = None) -> Config:
    return parse_config(
        {
            "clusters": [
                {"name": "dr1", "role": "primary", "ramen_name": ramen_name},
                {"name": "dr2", "role": "secondary"},
                {"name": "hub", "role": "hub"},
            ],
            "pairs": [
                {"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"], "hub": "hub"}
            ],
        }
    )


def vrg(
    conditions: dict[str, str],
    state: str = "primary",
    observed: int = 1,
    cluster: str = "dr1",
    reason: str = "Error",
    selector: Any = None,
    protected: list[str] | None = None,
) -> Any:
    obj = {
        "metadata": {"name": "app-vrg", "namespace": "app", "generation": 1},
        "spec": {"replicationState": state, "pvcSelector": selector or {}},
        "status": {
            "state": state.capitalize(),
            "conditions": [
                {"type": t, "status": s, "reason": reason, "observedGeneration": observed}
                for t, s in conditions.items()
            ],
        },
    }
    if protected is not None:
        obj["status"]["protectedPVCs"] = [{"name": n, "namespace": "app"} for n in protected]
    return k8s(cluster, "VolumeReplicationGroup", obj)


def drpc(
    phase: str | None,
    progression: str | None = None,
    cluster: str = "hub",
    synced: str | None = None,
    preferred: str = "dr1",
) -> Any:
    status = {"phase": phase, "progression": progression} if phase or progression else {}
    if synced:
        status["lastGroupSyncTime"] = synced
    obj = {
        "metadata": {"name": "app", "namespace": "app"},
        "spec": {"action": "Failover", "failoverCluster": "dr2", "preferredCluster": preferred},
        "status": status,
    }
    return k8s(cluster, "DRPlacementControl", obj)


def verdict(
    items: list[Any],
    rule: str = "vrg-not-protected",
    subject: str = VRG,
    cfg: Config | None = None,
) -> Any:
    return judge_all(items, cfg or config(), T).get((rule, subject), "absent")


def test_a_protected_primary_vrg_is_fine() -> None:
    assert verdict([*volume("dr1"), vrg(PROTECTED), *HEALTHY]) is None


def test_data_not_protected_on_the_primary_vrg_fires_with_ramens_words() -> None:
    found = verdict([*volume("dr1"), vrg({**PROTECTED, "DataProtected": "False"}), *HEALTHY])
    assert isinstance(found, Finding) and found.severity == "critical"
    assert "DataProtected is False/Error" in found.summary
    assert found.evidence["namespace"] == "app" and found.evidence["state"] == "Primary"
    assert found.evidence["condition.DataReady"] == "True/Error"  # this test's one reason


def test_ramen_still_at_work_is_unknown_not_failing_nor_fine() -> None:
    """After a failover the new primary's VRG says DataReady False/Progressing until its
    volumes are resynced, which can take hours: not a failure, not known to be protected."""
    working = vrg({**PROTECTED, "DataReady": "False"}, reason="Progressing")
    assert verdict([*volume("dr1"), working, *HEALTHY]) is UNKNOWN


def test_a_secondary_vrg_is_not_judged_by_primary_conditions() -> None:
    assert verdict([*volume("dr1"), vrg({"DataReady": "False"}, "secondary"), *HEALTHY]) is None


def test_conditions_not_reported_or_from_an_older_generation_are_unknown_not_fine() -> None:
    assert verdict([*volume("dr1"), vrg({}), *HEALTHY]) is UNKNOWN
    stale = vrg({**PROTECTED, "DataProtected": "False"}, observed=0)
    assert verdict([*volume("dr1"), stale, *HEALTHY]) is UNKNOWN


def test_an_action_in_progress_holds_it_back_whether_its_drpc_is_on_the_hub_or_not() -> None:
    bad = vrg({**PROTECTED, "DataReady": "False"})
    assert isinstance(verdict([*volume("dr1"), bad, *HEALTHY]), Finding)
    assert verdict([*volume("dr1"), bad, drpc("FailingOver"), *HEALTHY]) is None
    assert verdict([*volume("dr1"), bad, drpc("FailingOver", cluster="dr1"), *HEALTHY]) is None
    # A DRPC of another namespace is another application's action.
    other = k8s("hub", "DRPlacementControl", {"metadata": {"name": "x", "namespace": "other"},
                                               "status": {"phase": "FailingOver"}})  # fmt: skip
    assert isinstance(verdict([*volume("dr1"), bad, other, *HEALTHY]), Finding)


UNLISTED = "vrg-pvc-unprotected"


def test_a_pvc_the_vrg_selects_but_does_not_list_as_protected_fires() -> None:
    """Every VRG condition True, and still the claim "data" (labelled app=app) is not among
    the PVCs Ramen protects: a failover would come up without it."""
    selector = {"matchLabels": {"app": "app"}}
    found = verdict([*volume("dr1"), vrg(PROTECTED, selector=selector, protected=[]), *HEALTHY],
                    UNLISTED)  # fmt: skip
    assert isinstance(found, Finding) and found.severity == "critical"
    assert "selects 1 PVC(s) it does not protect: app/data" in found.summary
    assert found.evidence["images"] == "replicapool/csi-vol-0001"
    assert found.evidence["protected_pvcs"] == "(none)"
    listed = vrg(PROTECTED, selector=selector, protected=["data"])
    assert verdict([*volume("dr1"), listed, *HEALTHY], UNLISTED) is None
    # The vrg-not-protected verdict is untouched by what the list says.
    assert verdict([*volume("dr1"), listed, *HEALTHY]) is None


def test_a_pvc_the_selector_does_not_pick_is_not_ramens_to_protect() -> None:
    for selector in (
        {"matchLabels": {"app": "other"}},
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["app"]}]},
        {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
    ):
        item = vrg(PROTECTED, selector=selector, protected=[])
        assert verdict([*volume("dr1"), item, *HEALTHY], UNLISTED) is None, selector
    picks = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "app"]}]}
    item = vrg(PROTECTED, selector=picks, protected=["other"])
    assert isinstance(verdict([*volume("dr1"), item, *HEALTHY], UNLISTED), Finding)


def test_no_list_yet_or_a_selector_auditd_cannot_read_is_unknown_not_fine() -> None:
    assert verdict([*volume("dr1"), vrg(PROTECTED), *HEALTHY], UNLISTED) is UNKNOWN
    odd = {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["app"]}]}
    item = vrg(PROTECTED, selector=odd, protected=[])
    assert verdict([*volume("dr1"), item, *HEALTHY], UNLISTED) is UNKNOWN


def test_a_secondary_vrg_or_an_action_under_way_holds_the_list_back() -> None:
    item = vrg(PROTECTED, "secondary", protected=[])
    assert verdict([*volume("dr1"), item, *HEALTHY], UNLISTED) is None
    moving = [*volume("dr1"), vrg(PROTECTED, protected=[]), drpc("FailingOver"), *HEALTHY]
    assert verdict(moving, UNLISTED) is None


STUCK = ("drpc-progression-stuck", "hub/DRPlacementControl/app/app")


def test_a_drpc_in_an_action_is_pending_toward_stuck_and_at_rest_is_fine() -> None:
    found = verdict([*volume("dr1"), drpc("FailingOver", "WaitForReadiness"), *HEALTHY], *STUCK)
    assert isinstance(found, Finding) and found.severity == "critical"
    assert found.pair == "p" and found.cluster == "hub"  # the pair its hub serves
    assert "Failover in phase FailingOver, progression WaitForReadiness" in found.summary
    assert found.evidence["failoverCluster"] == "dr2"
    paused = verdict([drpc("FailedOver", "Paused")], *STUCK)
    assert isinstance(paused, Finding)
    assert verdict([drpc("FailedOver", "Completed")], *STUCK) is None
    assert verdict([drpc("Deployed")], *STUCK) is None
    assert verdict([drpc(None)], *STUCK) is UNKNOWN  # Ramen has not reported yet


RPO = ("ramen-rpo-disagreement", "hub/DRPlacementControl/app/app")
# The healthy capture's secondary synced its last snapshot at 09:48:00 (Ceph's word).
CEPH_SYNCED = "2026-11-26T09:48:00Z"


def test_ramen_and_ceph_agreeing_on_the_last_sync_is_fine() -> None:
    at_rest = drpc("Deployed", "Completed", synced=CEPH_SYNCED)
    assert verdict([*volume("dr1"), at_rest, *HEALTHY], *RPO) is None


def test_a_ramen_sync_time_standing_still_while_ceph_syncs_fires() -> None:
    stale = drpc("Deployed", "Completed", synced="2026-11-26T07:48:00Z")
    found = verdict([*volume("dr1"), stale, *HEALTHY], *RPO)
    assert isinstance(found, Finding) and found.pair == "p"
    assert "differ by 2h" in found.summary, found.summary
    assert found.evidence["ceph_oldest_synced_at"] == "2026-11-26T09:48:00+00:00"
    assert found.evidence["tolerance"] == "10m"


def test_ramens_time_is_not_weighed_mid_action_nor_when_it_says_none() -> None:
    moving = drpc("FailingOver", "WaitForReadiness", synced="2026-11-26T07:48:00Z")
    assert verdict([*volume("dr1"), moving, *HEALTHY], *RPO) is None
    assert verdict([*volume("dr1"), drpc("Deployed", "Completed"), *HEALTHY], *RPO) is UNKNOWN


PLACED = ("drpc-placement-disagrees", "hub/DRPlacementControl/app/app")


def test_ramen_placing_the_application_where_its_images_are_primary_is_fine() -> None:
    assert verdict([*volume("dr1"), drpc("Deployed", "Completed"), *HEALTHY], *PLACED) is None
    # Ramen's own name for dr1, mapped by clusters.ramen_name.
    east = drpc("Deployed", "Completed", preferred="east")
    assert verdict([*volume("dr1"), east, *HEALTHY], *PLACED, cfg=config("east")) is None
    assert verdict([*volume("dr1"), east, *HEALTHY], *PLACED) is UNKNOWN  # a name not placed


def test_ramen_saying_failed_over_while_ceph_keeps_the_old_primary_fires() -> None:
    found = verdict([*volume("dr1"), drpc("FailedOver", "Completed"), *HEALTHY], *PLACED)
    assert isinstance(found, Finding) and found.pair == "p"
    assert "Ramen places it on dr2, but 1 of its 1 volume(s) are primary on dr1" in found.summary
    assert found.evidence["volumes_elsewhere"] == "replicapool/csi-vol-0001"


FENCED = "primary-on-fenced-cluster"
VOLUME = "p/replicapool/csi-vol-0001"  # primary on dr1 in the healthy capture


def drcluster(name: str, fence: str | None = "Fenced", phase: str | None = None) -> Any:
    obj = {"metadata": {"name": name}, "spec": {"s3ProfileName": "s3", "region": name}}
    if fence:
        obj["spec"]["clusterFence"] = fence
    if phase:
        obj["status"] = {"phase": phase}
    return k8s("hub", "DRCluster", obj)


def test_a_volume_primary_only_on_a_fenced_cluster_fires() -> None:
    found = verdict([*volume("dr1"), drcluster("dr1"), drcluster("dr2", None), *HEALTHY],
                    FENCED, VOLUME)  # fmt: skip
    assert isinstance(found, Finding) and found.severity == "critical"
    assert found.cluster == "dr1" and found.pair == "p"
    assert "primary only on dr1, which Ramen's DRCluster dr1 says is fenced" in found.summary
    assert found.evidence["drcluster"] == "hub/DRCluster/dr1"
    manual = verdict([*volume("dr1"), drcluster("dr1", "ManuallyFenced"), *HEALTHY],
                     FENCED, VOLUME)  # fmt: skip
    assert isinstance(manual, Finding)
    done = verdict([*volume("dr1"), drcluster("dr1", None, "Fenced"), *HEALTHY], FENCED, VOLUME)
    assert isinstance(done, Finding)


def test_ramens_name_for_the_cluster_is_mapped_to_auditds() -> None:
    items = [*volume("dr1"), drcluster("east"), *HEALTHY]
    assert verdict(items, FENCED, VOLUME) is None  # Ramen's "east" is no cluster auditd knows
    found = verdict(items, FENCED, VOLUME, config(ramen_name="east"))
    assert isinstance(found, Finding) and "DRCluster east" in found.summary


def test_a_fence_on_the_peer_unfenced_or_an_action_under_way_is_fine() -> None:
    assert verdict([*volume("dr1"), drcluster("dr2"), *HEALTHY], FENCED, VOLUME) is None
    unfenced = drcluster("dr1", "Unfenced", "Unfenced")
    assert verdict([*volume("dr1"), unfenced, *HEALTHY], FENCED, VOLUME) is None
    # Fence, then fail over: the DRPC's action is the DR window.
    failing = [*volume("dr1"), drcluster("dr1"), drpc("FailingOver"), *HEALTHY]
    assert verdict(failing, FENCED, VOLUME) is None


def test_a_blind_hub_with_drclusters_is_unknown_not_fine() -> None:
    unfenced = [*volume("dr1"), drcluster("dr1", None), *HEALTHY]
    assert verdict(unfenced, FENCED, VOLUME) is None
    blind = [*unfenced, lost_watch("hub", "DRCluster")]
    assert verdict(blind, FENCED, VOLUME) is UNKNOWN
    # No Ramen at all (no DRCluster on the hub): nothing to be unsure of.
    assert (
        verdict([*volume("dr1"), *HEALTHY, lost_watch("hub", "DRCluster")], FENCED, VOLUME) is None
    )


def test_fencing_a_cluster_alone_judges_its_volumes_again() -> None:
    """A DRCluster speaks of a whole cluster: its change alone re-judges the volumes of the
    pairs its hub serves (no volume event follows a fence)."""
    from datetime import timedelta

    from auditd.inventory.inventory import Inventory
    from auditd.rules.engine import RuleEngine

    inv, engine = Inventory(), RuleEngine(config())
    for item in [*volume("dr1"), *HEALTHY]:
        if isinstance(item, type(HEALTHY[0])):
            delta = inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        else:
            delta = inv.apply(item)
        engine.evaluate(inv, delta.touched, T)
    after = engine.evaluate(inv, inv.apply(drcluster("dr1")).touched, T)
    assert isinstance(after.get((FENCED, VOLUME)), Finding)


def appset_drpc(phase: str, vrg_namespace: str | None) -> Any:
    """An ApplicationSet's DRPC: it lives in the GitOps namespace; the namespace of its VRG
    (its application's) is known once the managed cluster has reported it."""
    obj = {
        "metadata": {"name": "app-placement-drpc", "namespace": "openshift-gitops"},
        "spec": {"action": "Failover", "failoverCluster": "dr2", "preferredCluster": "dr1"},
        "status": {"phase": phase, "progression": "FailingOver"},
    }
    if vrg_namespace:
        meta = {"kind": "VolumeReplicationGroup", "name": "app-placement-drpc"}
        obj["status"]["resourceConditions"] = {
            "resourceMeta": {**meta, "namespace": vrg_namespace, "generation": 1}
        }
    return k8s("hub", "DRPlacementControl", obj)


def test_an_applicationset_drpc_joins_the_namespace_its_vrg_reported() -> None:
    """Its action is the window of the application's volumes, though it lives elsewhere."""
    bad = vrg({**PROTECTED, "DataReady": "False"})
    unreported = verdict([*volume("dr1"), bad, appset_drpc("FailingOver", None), *HEALTHY])
    assert isinstance(unreported, Finding)  # not known to be this application's yet
    joined = [*volume("dr1"), bad, appset_drpc("FailingOver", "app"), *HEALTHY]
    assert verdict(joined) is None
    stuck = verdict(joined, "drpc-progression-stuck",
                    "hub/DRPlacementControl/openshift-gitops/app-placement-drpc")  # fmt: skip
    assert isinstance(stuck, Finding)


def test_a_discovered_applications_vrg_covers_its_protected_namespaces() -> None:
    """Ramen's ops namespace holds the VRG; spec.protectedNamespaces names the application's."""
    obj = {
        "metadata": {"name": "disc", "namespace": "ramen-ops", "generation": 1},
        "spec": {"replicationState": "primary", "protectedNamespaces": ["app"],
                 "pvcSelector": {"matchLabels": {"app": "app"}}},
        "status": {"state": "Primary", "protectedPVCs": [{"name": "data", "namespace": "other"}]},
    }  # fmt: skip
    subject = "dr1/VolumeReplicationGroup/ramen-ops/disc"
    found = verdict([*volume("dr1"), k8s("dr1", "VolumeReplicationGroup", obj), *HEALTHY],
                    UNLISTED, subject)  # fmt: skip
    assert isinstance(found, Finding), found  # "other/data" is not "app/data"
    assert found.evidence["unprotected_pvcs"] == "app/data"
    obj["status"]["protectedPVCs"] = [{"name": "data", "namespace": "app"}]
    listed = [*volume("dr1"), k8s("dr1", "VolumeReplicationGroup", obj), *HEALTHY]
    assert verdict(listed, UNLISTED, subject) is None
