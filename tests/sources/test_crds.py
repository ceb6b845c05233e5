"""auditd's kind catalogue and facts against the real upstream CRDs and samples (tests/data/crds,
copied from csi-addons, Ramen and Rook with their attribution README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import DATA as TEST_DATA

from auditd.inventory.facts import facts_of
from auditd.sim.fakekube import FakeKubeAPI, kind_from_crd
from auditd.sources.kube.kinds import BY_NAME

DATA = TEST_DATA / "crds"


def load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1
    return docs[0]  # type: ignore[no-any-return]


CRDS = sorted(DATA.glob("*.yaml"))
SAMPLES = sorted((DATA / "samples").glob("*.yaml"))


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.stem)
def test_catalogue_matches_the_real_crd(path: Path) -> None:
    kind = kind_from_crd(load(path))
    ours = BY_NAME[kind.kind]
    assert (ours.group, ours.version, ours.plural, ours.namespaced) == (
        kind.group,
        kind.version,
        kind.plural,
        kind.namespaced,
    )


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_samples_round_trip_through_the_fake_and_give_facts(
    path: Path, clusters: dict[str, Any]
) -> None:
    fake: FakeKubeAPI = clusters["dr1"]
    for crd in CRDS:
        fake.install_crd(load(crd))
    sample = load(path)
    kind = BY_NAME[sample["kind"]]
    created = fake.create(kind, sample)
    facts = facts_of(kind.kind, created)
    assert facts, "every kind has DR facts"
    expected = {
        "VolumeReplication": {"replicationState": "primary"},
        "VolumeReplicationClass": {"schedulingInterval": "12m", "mirroringMode": "snapshot"},
        "VolumeReplicationGroup": {"replicationState": "primary"},
        "CephBlockPool": {"mirroring.enabled": "true", "mirroring.mode": "image"},
        "DRPlacementControl": {"phase": None},
    }[kind.kind]
    assert {k: facts.get(k) for k in expected} == expected


def test_drpc_and_pool_status_facts() -> None:
    drpc = load(DATA / "samples" / "ramendr.openshift.io_v1alpha1_drplacementcontrol.yaml")
    drpc["metadata"]["generation"] = 3
    drpc["status"] = {
        "phase": "FailingOver",
        "progression": "WaitingForResourceRestore",
        "lastGroupSyncTime": "2026-11-26T11:59:00Z",
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "FailingOver",
                "observedGeneration": 3,
            },
            {
                "type": "PeerReady",
                "status": "False",
                "reason": "NotStarted",
                "observedGeneration": 2,
            },
        ],
    }
    f = facts_of("DRPlacementControl", drpc)
    assert f["phase"] == "FailingOver" and f["progression"] == "WaitingForResourceRestore"
    assert f["condition.Available"] == "True/FailingOver" and "condition.PeerReady" not in f
    pool = load(DATA / "samples" / "ceph.rook.io_v1_cephblockpool_mirrored.yaml")
    pool["status"] = {
        "phase": "Ready",
        "mirroringStatus": {
            "summary": {
                "health": "WARNING",
                "daemon_health": "OK",
                "image_health": "WARNING",
                "states": {"replaying": 3, "unknown": 1},
            }
        },
    }
    f = facts_of("CephBlockPool", pool)
    assert (f["mirroring.health"], f["mirroring.daemon_health"]) == ("WARNING", "OK")
    assert f["mirroring.states"] == '{"replaying":3,"unknown":1}'
