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
        "VolumeGroupReplication": {"replicationState": "primary", "members": None},
        "VolumeGroupReplicationClass": {"provisioner": "driver.csi.com"},
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


def test_a_kind_added_to_the_catalogue_alone_is_watched_stored_joined_and_shown(
    monkeypatch: pytest.MonkeyPatch, make_config: Any, clusters: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 21, item 2: a kind is its catalogue entry (coordinates, and how it joins a volume)
    and its facts extractor. VolumeGroupReplication taken out of the catalogue and added back
    that way, as a kind of the test's own (joined by namespace, with a facts extractor of its
    own), and nothing else, is listed and watched by `auditd run` on both clusters, its objects
    and their transitions stored, its streams shown in `auditd status`, and joined to the
    volumes of its namespace in the pair view `auditd explain` shows."""
    from helpers import history, wait_until
    from sqlalchemy import select

    from auditd.clock import SYSTEM
    from auditd.daemon import runner
    from auditd.inventory.facts import EXTRACTORS
    from auditd.report.explain import explain_doc, explain_text
    from auditd.report.status import load_status, status_table
    from auditd.sim import objects
    from auditd.sources.kube import kinds
    from auditd.sources.kube.kinds import PV, PVC, Join, Kind
    from auditd.store.models import ObjectRow, TransitionRow

    crd = load(DATA / "replication.storage.openshift.io_volumegroupreplications.yaml")
    served = kind_from_crd(crd)
    vgr = Kind(
        served.group, served.version, served.plural, served.kind, True, required=False,
        joins=Join("namespace"),
    )  # fmt: skip
    without = tuple(k for k in kinds.ALL_KINDS if k.kind != vgr.kind)
    monkeypatch.setattr(kinds, "ALL_KINDS", (*without, vgr))
    monkeypatch.setitem(
        EXTRACTORS, vgr.kind, lambda obj: {"state": (obj.get("status") or {}).get("state")}
    )
    for name in ("dr1", "dr2"):
        clusters[name].install_crd(crd)
    clusters["dr1"].create(PVC, objects.pvc("data", "app", volume="pv-data"))
    clusters["dr1"].create(PV, objects.pv("pv-data", "app", "data", image="csi-vol-data"))
    clusters["dr1"].create(PVC, objects.pvc("other", "elsewhere", volume="pv-other"))
    clusters["dr1"].create(PV, objects.pv("pv-other", "elsewhere", "other", image="csi-vol-o"))
    config = make_config(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    url = config.database_url
    daemon = runner.Daemon(config)
    daemon.start()
    try:
        assert daemon.wait_synced(20)
        group = {
            "metadata": {"name": "app-group", "namespace": "app"},
            "spec": {"replicationState": "primary", "source": {"selector": {}}},
            "status": {"state": "Primary"},
        }
        clusters["dr1"].create(served, group)

        def stored() -> dict[str, str | None]:
            with history(url) as s:
                return {
                    r.name: r.facts.get("state")
                    for r in s.scalars(select(ObjectRow).where(ObjectRow.kind == vgr.kind))
                }

        wait_until(lambda: stored() == {"app-group": "Primary"}, 20)
        with history(url) as s:
            fields = {
                t.field
                for t in s.scalars(select(TransitionRow).where(TransitionRow.kind == vgr.kind))
            }
            doc = load_status(s, SYSTEM.now())
            joined = explain_doc(s, config, "app/data", SYSTEM.now())
            apart = explain_doc(s, config, "elsewhere/other", SYSTEM.now())
        assert {"exists", "state"} <= fields, fields
        streams = {(st["cluster"], st["kind"]): st["state"] for st in doc["streams"]}
        assert streams[("dr1", vgr.kind)] == streams[("dr2", vgr.kind)] == "ok", streams
        assert "VolumeGroupReplication" in status_table(doc, SYSTEM.now())
        assert joined is not None and apart is not None
        sides = {side["cluster"]: side["joined"] for side in joined["sides"]}
        assert sides == {"dr1": ["VolumeGroupReplication app/app-group"], "dr2": []}, sides
        assert "dr1 joined: VolumeGroupReplication app/app-group" in explain_text(joined)
        assert [side["joined"] for side in apart["sides"]] == [[], []]  # another namespace
    finally:
        daemon.stop()
