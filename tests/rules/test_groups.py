"""Consistency groups (csi-addons VolumeGroupReplication) on the real Ceph captures: a PVC a
group lists is protected, a group split across sites and a group left on the secondary fire,
and a healthy group says nothing."""

from __future__ import annotations

from typing import Any

from captured_pair import T, failed, fired, judge_all, k8s, probe

from auditd.config import Config, parse_config
from auditd.rules.model import UNKNOWN, Finding
from auditd.sim import objects

IMAGES = ("csi-vol-0001", "csi-vol-0002", "csi-vol-0003", "csi-vol-0004")
MEMBERS = [f"data-{image[-1]}" for image in IMAGES]
GROUP = "dr1/VolumeGroupReplication/app/app-group"


def config() -> Config:
    return parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [
                {
                    "name": "p",
                    "clusters": ["dr1", "dr2"],
                    "pools": ["replicapool"],
                    "mirrored_storage_classes": ["rbd-mirrored"],
                }
            ],
        }
    )


def claims(cluster: str) -> list[Any]:
    """The group's four PVCs (of a mirrored class) and their PVs, with no VR of their own."""
    out = []
    for image, name in zip(IMAGES, MEMBERS, strict=True):
        pvc = objects.pvc(name, "app", volume=f"pv-{cluster}-{image}")
        pvc["spec"]["storageClassName"] = "rbd-mirrored"
        out.append(k8s(cluster, "PersistentVolumeClaim", pvc))
        out.append(
            k8s(
                cluster, "PersistentVolume", objects.pv(f"pv-{cluster}-{image}", "app", name, image)
            )
        )
    return out


def group(cluster: str, state: str = "primary", members: list[str] = MEMBERS) -> Any:
    obj = {
        "metadata": {"name": "app-group", "namespace": "app"},
        "spec": {"replicationState": state, "source": {"selector": {"matchLabels": {"app": "db"}}}},
        "status": {
            "state": state.capitalize(),
            "persistentVolumeClaimsRefList": [{"name": m} for m in members],
        },
    }
    return k8s(cluster, "VolumeGroupReplication", obj)


def evaluate(items: list[Any]) -> dict[tuple[str, str], Any]:
    return judge_all(items, config(), T)


HEALTHY = [probe("dr1", "multi-image"), probe("dr2", "multi-image")]


def test_a_pvc_a_group_lists_is_protected_and_a_healthy_group_says_nothing() -> None:
    alone = fired(evaluate([*claims("dr1"), *HEALTHY]))
    assert alone["unprotected-volume"] == [f"p/replicapool/{i}" for i in IMAGES]  # the control

    v = evaluate([*claims("dr1"), group("dr1"), *HEALTHY])
    assert fired(v) == {}
    assert v[("group-split", GROUP)] is None
    assert v[("group-on-secondary", GROUP)] is None


def test_a_group_protects_only_the_pvcs_it_lists() -> None:
    f = fired(evaluate([*claims("dr1"), group("dr1", members=MEMBERS[:3]), *HEALTHY]))
    assert f == {"unprotected-volume": ["p/replicapool/csi-vol-0004"]}


def test_members_primary_on_different_sites_split_the_group() -> None:
    # The real capture after csi-vol-0001 alone was failed over to site-b.
    v = evaluate(
        [
            *claims("dr1"),
            group("dr1"),
            probe("dr1", "failover-2-promoted-site-b"),
            probe("dr2", "failover-2-promoted-site-b"),
        ]
    )
    finding = v[("group-split", GROUP)]
    assert isinstance(finding, Finding) and finding.severity == "critical"
    assert finding.evidence["dr2.primary"] == "replicapool/csi-vol-0001"
    assert finding.evidence["dr1.primary"] == (
        "replicapool/csi-vol-0002, replicapool/csi-vol-0003, replicapool/csi-vol-0004"
    )
    assert "members primary on dr1" in finding.summary and finding.evidence["namespace"] == "app"


def test_a_group_whose_members_storage_is_not_known_is_unknown_not_fine() -> None:
    v = evaluate([*claims("dr1"), group("dr1"), probe("dr1", "multi-image")])
    assert v[("group-split", GROUP)] is UNKNOWN


def test_a_group_on_the_secondary_fires_unless_it_is_set_secondary() -> None:
    on_dr2 = "dr2/VolumeGroupReplication/app/app-group"
    v = evaluate([*claims("dr1"), group("dr1"), group("dr2"), *HEALTHY])
    finding = v[("group-on-secondary", on_dr2)]
    assert isinstance(finding, Finding)
    assert "all 4 of its members' images are non-primary" in finding.summary
    assert v[("group-on-secondary", GROUP)] is None
    cleaning = evaluate([*claims("dr1"), group("dr1"), group("dr2", "secondary"), *HEALTHY])
    assert cleaning[("group-on-secondary", on_dr2)] is None


def test_both_sides_groups_primary_is_split_brain_only_where_ceph_does_not_say() -> None:
    """Without Ceph's records (not probed, or the probe failing) both groups Primary is the only
    evidence: a split brain for each member. Where the records are known and show one primary
    they decide: the two clusters' watch events are not ordered against each other, so a
    switch's new group seen before the old one's delete would page for nothing (it did, in a
    drill). A group staying Primary over non-primary images is group-on-secondary."""
    both = [*claims("dr1"), *claims("dr2"), group("dr1"), group("dr2")]
    members = [f"p/replicapool/{i}" for i in IMAGES]
    for evidence in ([], [failed("dr1"), failed("dr2")]):
        f = fired(evaluate([*both, *evidence]))
        assert f["split-brain"] == members, evidence
        finding = evaluate([*both, *evidence])[("split-brain", "p/replicapool/csi-vol-0002")]
        assert "VolumeGroupReplication are Primary" in finding.summary
    probed = evaluate([*both, *HEALTHY])
    assert "split-brain" not in fired(probed)
    assert all(probed[("split-brain", m)] is None for m in members)
    stale = probed[("group-on-secondary", "dr2/VolumeGroupReplication/app/app-group")]
    assert isinstance(stale, Finding)
