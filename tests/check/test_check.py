"""`auditd check`: one look at both clusters (the real client against the fake API servers) and
both Ceph sites (the real `direct` transport running the fake rbd on real captures, re-timed to
now), judged by the daemon's own rules; exit code, table, json and JUnit XML."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from helpers import demo_still_running
from rbd_site import Site

from auditd.cli import main
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PV, PVC, VR

IMAGE = "csi-vol-0001"  # the captures' image


def _config(
    kubeconfig: Path, db: Path, sites: dict[str, Site], hub_context: str | None = None
) -> str:
    """The pair's config: each site's Ceph answered by the replayed captures (fakerbd)."""
    return pair_config_toml(
        kubeconfig,
        f"sqlite:///{db}",
        pools=("replicapool",),
        ceph={
            name: {
                "conf": str(site.dir / "ceph.conf"),
                "rbd_command": [sys.executable, "-m", "auditd.sim.fakerbd"],
            }
            for name, site in sites.items()
        },
        hub_context=hub_context,
    )


@pytest.fixture
def pair(tmp_path: Path, clusters: dict[str, Any]) -> dict[str, Any]:
    """dr1 primary with its PVC/PV/VR, dr2 the replica with nothing; both sites healthy."""
    sites = {"dr1": Site(tmp_path, "site-a"), "dr2": Site(tmp_path, "site-b")}
    for site in sites.values():
        (site.dir / "retime").write_text("5")  # the capture, as if written 5 s ago
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(_config(clusters["kubeconfig"], tmp_path / "never-made.db", sites))
    dr1: FakeKubeAPI = clusters["dr1"]
    dr1.create(PV, objects.pv("pv-1", "app", "data-1", IMAGE))
    dr1.create(PVC, objects.pvc("data-1", "app", volume="pv-1"))
    dr1.create(VR, objects.vr("data-1", "app", "data-1"))
    return {"config": cfg, "sites": sites, **clusters, "db": tmp_path / "never-made.db"}


def _check(pair: dict[str, Any], capsys: Any, *args: str) -> tuple[int, str]:
    code = main(["check", "-c", str(pair["config"]), *args])
    return code, capsys.readouterr().out


def test_a_healthy_pair_passes_and_needs_no_database(pair: dict[str, Any], capsys: Any) -> None:
    code, out = _check(pair, capsys)
    assert code == 0, out
    assert "all good" in out and "for-durations do not apply" in out
    assert "1 volume(s): 1 with every rule ok" in out
    assert not pair["db"].exists()
    code, out = _check(pair, capsys, "-o", "json")
    doc = json.loads(out)
    assert doc["exit_code"] == 0 and doc["unseen"] == []
    [volume] = doc["volumes"]
    assert volume["volume"] == f"dr1-dr2/replicapool/{IMAGE}" and volume["verdicts"] == []
    assert "split-brain" in volume["ok"]
    by_hand = volume["verify_by_hand"]
    assert "kubectl --context=dr2 -n app get pvc data-1  # should NOT exist" in by_hand
    assert "kubectl --context=dr1 get pv pv-1  # should exist" in by_hand
    assert f"rbd mirror image status replicapool/{IMAGE}  # on dr2's Ceph, up+replaying" in by_hand


def test_a_pvc_on_the_secondary_is_a_violation_at_once_with_its_commands(
    pair: dict[str, Any], capsys: Any
) -> None:
    pair["dr2"].create(PVC, objects.pvc("data-1", "app", phase="Pending"))
    code, out = _check(pair, capsys)
    assert code == 1, out
    assert "pvc-on-secondary" in out and "VIOLATED" in out
    assert "kubectl --context dr2 -n app get pvc data-1 -o yaml" in out
    assert f"rbd mirror image status replicapool/{IMAGE} (on both sites)" in out
    assert "1 volume(s): 0 with every rule ok" in out  # the stray PVC is the volume's
    report = pair["config"].parent / "check.xml"
    code, _ = _check(pair, capsys, "-o", "junit", "--output-file", str(report))
    assert code == 1
    root = ET.fromstring(report.read_text())
    failures = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert "pvc-on-secondary dr2/PersistentVolumeClaim/app/data-1" in failures
    passed = [c for c in root.iter("testcase") if len(c) == 0]
    assert passed, "the rules that hold are test cases too"


def test_a_cluster_that_does_not_answer_is_never_a_pass(pair: dict[str, Any], capsys: Any) -> None:
    pair["dr2"].stop()
    code, out = _check(pair, capsys, "-o", "json")
    doc = json.loads(out)
    assert code == 3, out
    assert any(u.startswith("dr2") for u in doc["unseen"])


def test_a_probe_that_fails_is_never_a_pass(pair: dict[str, Any], capsys: Any) -> None:
    pair["sites"]["dr2"].scenario("auth")
    code, out = _check(pair, capsys)
    assert code == 3, out
    assert "COULD NOT SEE" in out and "dr2 pool replicapool: probe failed" in out
    assert "Permission denied" in out or "auth" in out


def test_both_sites_demoted_is_a_switch_in_progress_not_a_violation(
    pair: dict[str, Any], capsys: Any
) -> None:
    for site in pair["sites"].values():
        site.scenario("failover-1-demoted-site-a")
    code, out = _check(pair, capsys, "-o", "json")
    doc = json.loads(out)
    assert code == 4, out
    assert doc["switching"] == [f"dr1-dr2/replicapool/{IMAGE}"]
    assert all(v["outcome"] != "violated" for vol in doc["volumes"] for v in vol["verdicts"])


def test_filters_and_a_bad_config(pair: dict[str, Any], capsys: Any, tmp_path: Path) -> None:
    pair["dr2"].create(PVC, objects.pvc("stray", "other", phase="Pending"))
    code, out = _check(pair, capsys, "--namespace", "app", "-o", "json")
    assert "stray" not in out
    code, out = _check(pair, capsys, "--pair", "nope")
    assert code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("clusters = 3\n")
    assert main(["check", "-c", str(bad)]) == 2


@pytest.mark.parametrize(
    ("kind", "obj", "rule", "subject"),
    [
        (
            PV,
            objects.pv("pv-1", "app", "data-1", IMAGE),
            "pv-on-secondary",
            "PersistentVolume/pv-1",
        ),
        (
            VR,
            objects.vr("data-1", "app", "data-1"),
            "vr-on-secondary",
            "VolumeReplication/app/data-1",
        ),
    ],
)
def test_each_of_the_seeds_should_not_exist_on_dr2_fails_naming_the_object(
    pair: dict[str, Any], capsys: Any, kind: Any, obj: dict[str, Any], rule: str, subject: str
) -> None:
    """The seed's step 8: what SHOULD NOT exist on DR2, each case its own rule and object."""
    pair["dr2"].create(kind, obj)
    code, out = _check(pair, capsys, "-o", "json")
    assert code == 1, out
    [volume] = json.loads(out)["volumes"]
    violated = {(v["rule"], v["subject"]) for v in volume["verdicts"] if v["outcome"] == "violated"}
    assert (rule, f"dr2/{subject}") in violated, violated


# ----------------------------------------------------------------- preflight


def _preflight(pair: dict[str, Any], capsys: Any, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["preflight", "dr1-dr2", "-c", str(pair["config"]), "-o", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def _reasons(doc: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    [volume] = doc["volumes"]
    return {r["check"]: (r["ok"], r["evidence"]) for r in volume["reasons"]}


@pytest.fixture
def classes(pair: dict[str, Any]) -> dict[str, Any]:
    """The VolumeReplicationClass the VR names and the PVC's StorageClass, on both clusters,
    as Rook installs them."""
    from auditd.sources.kube.kinds import STORAGE_CLASS, VRC

    for name in ("dr1", "dr2"):
        pair[name].create(VRC, objects.vrc())
        pair[name].create(STORAGE_CLASS, objects.storage_class())
    return pair


def test_preflight_says_go_for_a_healthy_pair_with_every_reason(
    classes: dict[str, Any], capsys: Any
) -> None:
    code, doc = _preflight(classes, capsys, "--to", "dr2")
    assert code == 0, doc
    [volume] = doc["volumes"]
    assert (volume["from"], volume["to"], volume["decision"]) == ("dr1", "dr2", "GO")
    reasons = _reasons(doc)
    assert set(reasons) == {
        "no-switch-in-progress", "no-split-brain", "target-replica", "rpo", "target-clean",
        "target-vrc", "target-storage-class", "rbd-mirror-up",
    }  # fmt: skip
    assert all(ok is True for ok, _ in reasons.values()), reasons
    assert "up+replaying" in reasons["target-replica"][1]
    assert all(r["verify"] for r in volume["reasons"])


def test_preflight_no_go_names_each_reason(classes: dict[str, Any], capsys: Any) -> None:
    classes["dr2"].create(PVC, objects.pvc("data-1", "app", phase="Pending"))
    code, doc = _preflight(classes, capsys)
    assert code == 1, doc
    reasons = _reasons(doc)
    assert reasons["target-clean"] == (False, "already on dr2: PersistentVolumeClaim app/data-1")
    code, doc = _preflight(classes, capsys, "--to", "dr1")
    assert code == 1
    assert _reasons(doc)["target-replica"] == (False, "already primary on dr1")


def test_preflight_no_go_when_rbd_mirror_is_down_or_the_class_missing(
    pair: dict[str, Any], capsys: Any
) -> None:
    code, doc = _preflight(pair, capsys)
    assert code == 1
    reasons = _reasons(doc)
    assert reasons["target-vrc"][0] is False  # no class on dr2: its VR cannot be made
    assert reasons["target-storage-class"] == (False, "StorageClass rook-ceph-block not on dr2")
    for site in pair["sites"].values():
        site.scenario("mirror-daemon-down-t65s")
    code, doc = _preflight(pair, capsys)
    ok, evidence = _reasons(doc)["rbd-mirror-up"]
    assert code == 1 and ok is False, evidence


def test_preflight_reads_the_drpc_on_the_pairs_ramen_hub(
    classes: dict[str, Any], capsys: Any
) -> None:
    """With Ramen, the DRPC lives on the hub: an action under way there is a no-go here."""
    from auditd.sim.fakekube import write_kubeconfig
    from auditd.sources.kube.kinds import DRPC, kinds_for

    hub = FakeKubeAPI("hub", kinds_for("hub")).start()
    try:
        urls = {"dr1": classes["dr1"].url, "dr2": classes["dr2"].url, "hub": hub.url}
        write_kubeconfig(str(classes["kubeconfig"]), urls)
        classes["config"].write_text(
            _config(classes["kubeconfig"], classes["db"], classes["sites"], hub_context="hub")
        )
        drpc = objects.drpc("app", "app", "dr1")
        drpc["status"]["conditions"] = [{"type": "PeerReady", "status": "True", "reason": "Ok"}]
        hub.create(DRPC, drpc)
        code, doc = _preflight(classes, capsys, "--to", "dr2")
        assert code == 0, doc
        assert _reasons(doc)["drpc-allows"] == (True, "no DRPC progression, peer ready")
        drpc["status"]["phase"] = "FailingOver"
        hub.replace(DRPC, drpc)
        code, doc = _preflight(classes, capsys, "--to", "dr2")
        assert code == 1, doc
        assert _reasons(doc)["drpc-allows"] == (False, "DRPC app/app is FailingOver")
    finally:
        hub.stop()


def test_preflight_never_says_go_without_seeing(classes: dict[str, Any], capsys: Any) -> None:
    classes["sites"]["dr2"].scenario("auth")
    code, doc = _preflight(classes, capsys)
    assert code in (1, 3) and doc["volumes"][0]["decision"] != "GO", doc
    assert doc["unseen"]
    assert main(["preflight", "nope", "-c", str(classes["config"])]) == 2


# ------------------------------------------------------------------- --from-db


def test_from_db_judges_what_the_daemon_holds_as_explain_does(tmp_path: Path) -> None:
    """--from-db: no look at all; the stored state judged now gives the verdicts `auditd
    explain` gives, volume by volume (the demo's history: a healthy replayed volume, and one
    whose image Ceph never reported)."""
    import subprocess

    def auditd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "auditd", *args], capture_output=True, text=True, timeout=120
        )

    demo = auditd("demo", "--data-dir", str(tmp_path))
    assert demo.returncode == 0, demo.stderr
    cfg = str(tmp_path / "auditd.toml")
    demo_still_running(tmp_path)
    checked = auditd("check", "--from-db", "-c", cfg, "-o", "json")
    assert checked.returncode in (0, 1, 3, 4), checked.stderr
    doc = json.loads(checked.stdout)
    by_volume = {v["volume"]: v for v in doc["volumes"]}
    for target in ("payments/ledger", "shop/mysql-data"):
        demo_still_running(tmp_path)
        explained = json.loads(auditd("explain", "-c", cfg, target, "-o", "json").stdout)
        volume = by_volume[explained["volume"]]
        pools = [r for r in explained["verdicts"] if "/RbdPool/" in r["subject"]]
        own = [r for r in explained["verdicts"] if r not in pools]
        said = {
            (r["rule"], r["subject"]): r["verdict"].lower() for r in own if r["verdict"] != "ok"
        }
        judged = {(r["rule"], r["subject"]): r["outcome"] for r in volume["verdicts"]}
        assert judged == said, (target, judged, said)
        assert set(volume["ok"]) == {r["rule"] for r in own if r["verdict"] == "ok"} - {
            r for r, _ in said
        }
        # The pool's verdicts (about no one volume) are among the others, the same.
        other = {(r["rule"], r["subject"]): r["outcome"] for r in doc["other"]}
        assert pools and all(
            other[(r["rule"], r["subject"])] == r["verdict"].lower() for r in pools
        ), (pools, other)
