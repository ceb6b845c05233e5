"""Ramen's VolumeReplicationGroup conditions, read where the VRG lives, on the real captures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from captured_pair import T, k8s, probe, volume

from auditd.config import Config, parse_config
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.rules.model import UNKNOWN, Finding
from auditd.sources.rbd.probe import ProbeResult

VRG = "dr1/VolumeReplicationGroup/app/app-vrg"
HEALTHY = [probe("dr1", "healthy"), probe("dr2", "healthy")]
PROTECTED = {"DataReady": "True", "DataProtected": "True", "ClusterDataProtected": "True"}


def config() -> Config:
    return parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
        }
    )


def vrg(
    conditions: dict[str, str], state: str = "primary", observed: int = 1, cluster: str = "dr1"
) -> Any:
    obj = {
        "metadata": {"name": "app-vrg", "namespace": "app", "generation": 1},
        "spec": {"replicationState": state, "pvcSelector": {}},
        "status": {
            "state": state.capitalize(),
            "conditions": [
                {"type": t, "status": s, "reason": "Test", "observedGeneration": observed}
                for t, s in conditions.items()
            ],
        },
    }
    return k8s(cluster, "VolumeReplicationGroup", obj)


def drpc(phase: str) -> Any:
    obj = {"metadata": {"name": "app", "namespace": "app"}, "status": {"phase": phase}}
    return k8s("dr1", "DRPlacementControl", obj)


def verdict(items: list[Any]) -> Any:
    inv, engine = Inventory(), RuleEngine(config())
    for item in items:
        if isinstance(item, ProbeResult):
            delta = inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        else:
            delta = inv.apply(item)
        engine.evaluate(inv, delta.touched, T)
    return engine.evaluate(inv, set(inv.objects), T).get(("vrg-not-protected", VRG), "absent")


def test_a_protected_primary_vrg_is_fine() -> None:
    assert verdict([*volume("dr1"), vrg(PROTECTED), *HEALTHY]) is None


def test_data_not_protected_on_the_primary_vrg_fires_with_ramens_words() -> None:
    found = verdict([*volume("dr1"), vrg({**PROTECTED, "DataProtected": "False"}), *HEALTHY])
    assert isinstance(found, Finding) and found.severity == "critical"
    assert "DataProtected is False/Test" in found.summary
    assert found.evidence["namespace"] == "app" and found.evidence["state"] == "Primary"
    assert found.evidence["condition.DataReady"] == "True/Test"


def test_a_secondary_vrg_is_not_judged_by_primary_conditions() -> None:
    assert verdict([*volume("dr1"), vrg({"DataReady": "False"}, "secondary"), *HEALTHY]) is None


def test_conditions_not_reported_or_from_an_older_generation_are_unknown_not_fine() -> None:
    assert verdict([*volume("dr1"), vrg({}), *HEALTHY]) is UNKNOWN
    stale = vrg({**PROTECTED, "DataProtected": "False"}, observed=0)
    assert verdict([*volume("dr1"), stale, *HEALTHY]) is UNKNOWN


def test_an_action_in_progress_holds_it_back() -> None:
    bad = vrg({**PROTECTED, "DataReady": "False"})
    assert isinstance(verdict([*volume("dr1"), bad, *HEALTHY]), Finding)
    assert verdict([*volume("dr1"), bad, drpc("FailingOver"), *HEALTHY]) is None
