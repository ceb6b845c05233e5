"""RBD probes through the real `direct` transport (a subprocess), with a stand-in `rbd` that
replays the real captures, and the facts and transitions they make."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from paths import RBD
from rbd_site import Site

from auditd.inventory.inventory import Inventory
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import PoolProber, ProbeResult
from auditd.sources.rbd.transport import DirectTransport, ProbeFailure, classify_failure

DATA = RBD
FAKE_RBD = [sys.executable, "-m", "auditd.sim.fakerbd"]
STALE = timedelta(days=3650)  # the captures are from the past; staleness is tested elsewhere


@pytest.fixture
def site_a(tmp_path: Path) -> Site:
    return Site(tmp_path, "site-a")


def _capture(name: str) -> tuple[int, str]:
    text = (DATA / "errors" / name).read_text()
    rc = int(text.split("exit_code: ")[1].split()[0])
    return rc, text.split("--- stderr ---\n", 1)[1]


@pytest.mark.parametrize(
    ("capture", "kind"),
    [
        ("site-a-mirror-image-status-nonexistent.txt", "no-such-image"),
        ("site-a-mirror-image-status-mirroring-disabled.txt", "mirroring-disabled"),
        ("site-b-mirror-image-status-not-on-secondary.txt", "no-such-image"),
        ("site-a-mirror-pool-status-nonexistent-pool.txt", "no-such-pool"),
    ],
)
def test_real_error_outputs_are_classified(capture: str, kind: str) -> None:
    rc, stderr = _capture(capture)
    assert classify_failure(rc, stderr).kind == kind


def test_read_only_during_promote_and_auth() -> None:
    assert (
        classify_failure(
            30, "rbd: error promoting image to primary\n2026 (30) Read-only file system"
        ).kind
        == "read-only"
    )
    assert (
        classify_failure(13, "monclient: authenticate failed: (13) Permission denied").kind
        == "auth"
    )


def test_status_probe_is_one_call_for_the_whole_pool(site_a: Site) -> None:
    results: list[ProbeResult] = []
    site_a.scenario("multi-image")
    r = site_a.prober(results).probe_status()
    assert r.failure is None and r.status is not None and len(r.status.images) == 4
    assert results == [r] and r.duration > 0


def test_info_probe(site_a: Site) -> None:
    r = site_a.prober([]).probe_info()
    assert r.failure is None and r.info is not None and r.info.mode == "image"
    assert [s.image for s in r.schedules] == ["replicapool/csi-vol-0001"]


@pytest.mark.parametrize(
    ("scenario", "kind"), [("garbage", "garbage"), ("auth", "auth"), ("no-pool", "no-such-pool")]
)
def test_failures_are_results_with_their_error(site_a: Site, scenario: str, kind: str) -> None:
    site_a.scenario(scenario)
    r = site_a.prober([]).probe_status()
    assert r.status is None and r.failure is not None and r.failure.kind == kind


def test_timeout(site_a: Site) -> None:
    site_a.scenario("timeout")
    r = site_a.prober([], timeout=1).probe_status()
    assert r.failure is not None and r.failure.kind == "timeout" and r.duration < 5


def test_missing_binary_and_hostile_pool_names(tmp_path: Path) -> None:
    t = DirectTransport(tmp_path / "ceph.conf", "auditd", command=["/nonexistent/rbd"])
    r = PoolProber("x", "replicapool", t, 5, lambda _: None).probe_status()
    assert r.failure is not None and r.failure.kind == "error"
    for bad in ("pool; rm -rf /", "../etc", "-rf", "p$(id)", ""):
        with pytest.raises(ProbeFailure):
            PoolProber("x", bad, t, 5, lambda _: None)


def test_secrets_are_scrubbed_from_probe_errors() -> None:
    f = classify_failure(1, "key = AQBpbGVnYWxfc2VjcmV0X2tleV9vZl9jZXBoeA==\nrbd: failed")
    assert "AQBpbGVn" not in str(f) and "AQBpbGVn" not in f.message


def _result(scenario: str, site: str = "site-a", cluster: str = "dr1") -> ProbeResult:
    path = DATA / scenario / f"{site}-mirror-pool-status-verbose.json"
    status = parse_pool_status(path.read_text())
    at = max(i.local.last_update for i in status.images if i.local.last_update) + timedelta(
        seconds=5
    )
    return ProbeResult(cluster, "replicapool", "status", at, 0.1, status=status)


def _rows(inv: Inventory, result: ProbeResult) -> list[tuple[str, str, str | None, str | None]]:
    return [(t.key.name, t.field, t.old, t.new) for t in inv.apply_probe(result, STALE).transitions]


def test_planned_failover_is_a_sequence_of_image_transitions() -> None:
    inv = Inventory()
    first = _rows(inv, _result("healthy"))
    assert ("csi-vol-0001", "state", None, "up+stopped") in first
    assert ("replicapool", "health", None, "OK") in first
    assert _rows(inv, _result("healthy")) == []  # unchanged: no transition
    demoted = _rows(inv, _result("failover-1-demoted-site-a"))
    assert [r for r in demoted if r[0] == "csi-vol-0001"] == [
        ("csi-vol-0001", "class", "healthy", "unknown"),
        ("csi-vol-0001", "description", "local image is primary", "remote image is not primary"),
        ("csi-vol-0001", "peer.site-b", "up+replaying", "up+unknown"),
        ("csi-vol-0001", "primary", "true", "false"),
        ("csi-vol-0001", "state", "up+stopped", "up+unknown"),
    ]
    assert ("replicapool", "images", "1", "4") in demoted
    after = _rows(inv, _result("failover-2-promoted-site-b"))
    assert ("csi-vol-0001", "state", "up+unknown", "up+replaying") in after
    assert ("csi-vol-0001", "class", "unknown", "healthy") in after


def test_failed_probe_keeps_the_last_good_state_and_marks_the_pool() -> None:
    inv = Inventory()
    inv.apply_probe(_result("healthy"), STALE)
    failed = ProbeResult(
        "dr1",
        "replicapool",
        "status",
        _result("healthy").at,
        20,
        failure=ProbeFailure("timeout", "no answer"),
    )
    # The images keep their last state, but none reads healthy until a good probe.
    assert _rows(inv, failed) == [
        ("replicapool", "probe", "ok", "failing"),
        ("replicapool", "probe_error", None, "timeout"),
        ("replicapool", "probe_failing_since", None, failed.at.isoformat()),
        ("csi-vol-0001", "class", "healthy", "unknown"),
    ]
    assert (
        inv.objects[next(k for k in inv.objects if k.name == "csi-vol-0001")].facts["state"]
        == "up+stopped"
    )
    assert ("replicapool", "probe", "failing", "ok") in _rows(inv, _result("healthy"))


def test_an_image_gone_from_the_pool_is_recorded_gone() -> None:
    inv = Inventory()
    inv.apply_probe(_result("multi-image"), STALE)
    rows = _rows(inv, _result("disable-delete-1-disabled-on-primary"))
    gone = [r[0] for r in rows if r[1] == "exists"]
    assert gone and all(r[3] == "false" for r in rows if r[1] == "exists")
