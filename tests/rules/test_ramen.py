"""Ramen's VolumeReplicationGroup conditions, read where the VRG lives, on the real captures."""

from __future__ import annotations

from typing import Any

from captured_pair import T, judge_all, k8s, probe, volume

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
) -> Any:
    obj = {
        "metadata": {"name": "app-vrg", "namespace": "app", "generation": 1},
        "spec": {"replicationState": state, "pvcSelector": {}},
        "status": {
            "state": state.capitalize(),
            "conditions": [
                {"type": t, "status": s, "reason": reason, "observedGeneration": observed}
                for t, s in conditions.items()
            ],
        },
    }
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
