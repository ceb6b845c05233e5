"""Where Ceph is not probed (issue 12, items 2 and 3): a verdict reached for a Kubernetes-only
reason resolves when that reason is observed gone, and the Kubernetes-only rules judge by the
configured roles, as the README says."""

from __future__ import annotations

from pathlib import Path

from captured_pair import k8s, volume
from pipeline import Pipeline, deleted

from auditd.sim import objects
from auditd.sources.kube.events import ObjectEvent

VOLUME = "p/replicapool/csi-vol-0001"


def _primary_vr(cluster: str) -> ObjectEvent:
    vr = objects.vr("data", "app", "data")
    vr["status"] = {"state": "Primary"}
    return k8s(cluster, "VolumeReplication", vr)


def test_split_brain_on_both_vrs_primary_resolves_when_one_vr_goes(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    p.at(0, *volume("dr1")[:2], _primary_vr("dr1"), *volume("dr2")[:2], _primary_vr("dr2"))
    assert ("split-brain", VOLUME, "firing") in p.violations()
    # Without probes "both VRs Primary" is the only reason there is: gone, it resolves (it
    # used to turn UNKNOWN for want of storage truth and stay open forever).
    p.at(1, deleted(_primary_vr("dr2")))
    assert ("split-brain", VOLUME, "resolved") in p.violations()


def test_a_degraded_vr_on_the_configured_primary_is_reported_without_probes(
    tmp_path: Path,
) -> None:
    p = Pipeline(tmp_path, **{"vr-degraded": {"for": "0s"}})
    vr = objects.vr("data", "app", "data")
    vr["status"] = {
        "state": "Primary",
        "conditions": [
            {"type": "Degraded", "status": "True", "reason": "Degraded"},
            {"type": "Completed", "status": "True", "reason": "Promoted"},
        ],
    }
    pvc, pv, _ = volume("dr1")
    p.at(0, pvc, pv, k8s("dr1", "VolumeReplication", vr))
    assert ("vr-degraded", VOLUME, "firing") in p.violations()


def test_a_pvc_without_vr_on_the_configured_primary_is_unprotected_without_probes(
    tmp_path: Path,
) -> None:
    p = Pipeline(tmp_path, **{"unprotected-volume": {"for": "0s"}})
    pvc, pv, _ = volume("dr1")
    p.at(0, pvc, pv)
    assert ("unprotected-volume", VOLUME, "firing") in p.violations()
