"""The real-Ceph tier: two Ceph Pacific sites with rbd-mirror on loopback (scripts/ceph-lab.sh),
probed through the real `direct` transport as the restricted cephx user client.auditd.

Runs when the lab is up ($AUDITD_CEPH_LAB, default /tmp/auditd-ceph-lab, holds `.up`), or starts
it with AUDITD_CEPH_LAB_START=1. Skipped otherwise, unless AUDITD_REQUIRE_CEPH=1 (CI).
The tests run in file order on one lab and leave it as they found it (csi-vol-0001 primary on
site-a); the forced promotion (split brain) is tests/system/test_drill_on_ceph.py's, last of all.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from paths import ROOT

from auditd.inventory.inventory import Inventory
from auditd.sources.rbd.probe import PoolProber, ProbeResult
from auditd.sources.rbd.transport import DirectTransport

pytestmark = pytest.mark.ceph
LAB_SCRIPT = ROOT / "scripts" / "ceph-lab.sh"
IMAGE = "csi-vol-0001"
STALE = timedelta(minutes=3)


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    base = Path(os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    started = False
    if not (base / ".up").exists():
        if os.environ.get("AUDITD_CEPH_LAB_START") == "1":
            subprocess.run([str(LAB_SCRIPT), "up"], check=True, timeout=900)
            started = True
        elif os.environ.get("AUDITD_REQUIRE_CEPH") == "1":
            pytest.fail(f"the Ceph lab is required but not up in {base}")
        else:
            pytest.skip(
                f"no Ceph lab in {base} (scripts/ceph-lab.sh up, or AUDITD_CEPH_LAB_START=1)"
            )
    yield base
    if started:
        subprocess.run([str(LAB_SCRIPT), "down"], check=False, timeout=300)


def admin(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAB_SCRIPT), *args], capture_output=True, text=True, timeout=180, check=check
    )


class Probe:
    """Both sites' status probes feeding one inventory, as the daemon does."""

    def __init__(self, base: Path) -> None:
        self.inventory = Inventory()
        self.results: list[ProbeResult] = []
        self.probers = {
            site: PoolProber(
                site,
                "replicapool",
                DirectTransport(base / site / "auditd.conf", "auditd"),
                20,
                self.results.append,
            )
            for site in ("site-a", "site-b")
        }
        self.transitions: list[tuple[str, str, str | None, str | None]] = []

    def cycle(self) -> dict[str, dict[str, str | None]]:
        out = {}
        for site, prober in self.probers.items():
            r = prober.probe_status()
            assert r.failure is None, f"{site}: {r.failure}"
            for t in self.inventory.apply_probe(r, STALE).transitions:
                self.transitions.append((t.key.cluster, t.key.name, t.field, t.new))
            out[site] = next(
                (
                    v.facts
                    for k, v in self.inventory.objects.items()
                    if k.cluster == site and k.name == IMAGE
                ),
                {},
            )
        return out

    def until(
        self, cond, timeout: float = 120, every: float = 2
    ) -> dict[str, dict[str, str | None]]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            facts = self.cycle()
            if cond(facts):
                return facts
            assert time.monotonic() < deadline, f"not reached in {timeout}s; last: {facts}"
            time.sleep(every)


def states(f: dict[str, dict[str, str | None]]) -> tuple[str | None, str | None]:
    return f["site-a"].get("state"), f["site-b"].get("state")


def test_probe_user_runs_every_probe_command(lab: Path) -> None:
    for site in ("site-a", "site-b"):
        t = DirectTransport(lab / site / "auditd.conf", "auditd")
        for args in (
            ["mirror", "pool", "status", "replicapool", "--verbose", "--format", "json"],
            ["mirror", "pool", "info", "replicapool", "--format", "json"],
            [
                "mirror",
                "snapshot",
                "schedule",
                "status",
                "--pool",
                "replicapool",
                "--format",
                "json",
            ],
        ):
            r = t.run(args, 30)
            assert r.rc == 0 and "denied" not in r.stderr.lower(), (site, args, r.stderr)


def test_strictly_read_only_user_is_a_recorded_failure_not_a_partial_answer(
    lab: Path, tmp_path: Path
) -> None:
    # With read-only OSD caps, --verbose cannot open images: rbd prints a summary with
    # "images": [] and exits 1. auditd must record that as a failure, never as "no images".
    keyring = tmp_path / "ro.keyring"
    subprocess.run(
        [
            "ceph",
            "--cluster",
            "site-a",
            "-c",
            str(lab / "site-a" / "ceph.conf"),
            "auth",
            "get-or-create",
            "client.auditd-ro",
            "mon",
            'profile rbd, allow command "service dump", allow command "service status"',
            "osd",
            "profile rbd-read-only pool=replicapool",
            "mgr",
            "profile rbd-read-only pool=replicapool",
            "-o",
            str(keyring),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    t = DirectTransport(lab / "site-a" / "auditd.conf", "auditd-ro", keyring=keyring)
    r = PoolProber("site-a", "replicapool", t, 30, lambda _: None).probe_status()
    assert r.status is None and r.failure is not None and r.failure.kind == "auth"
    assert "not permitted" in r.failure.message.lower()


def test_healthy_pair(lab: Path) -> None:
    p = Probe(lab)
    facts = p.until(lambda f: states(f) == ("up+stopped", "up+replaying"), timeout=60)
    assert (facts["site-a"]["primary"], facts["site-b"]["primary"]) == ("true", "false")
    assert (facts["site-a"]["class"], facts["site-b"]["class"]) == ("healthy", "healthy")
    info = p.probers["site-a"].probe_info()
    assert info.failure is None and info.info is not None and info.info.mode == "image"


def test_stopped_rbd_mirror_is_seen_within_two_probe_cycles(lab: Path) -> None:
    p = Probe(lab)
    p.until(lambda f: states(f) == ("up+stopped", "up+replaying"), timeout=60)
    interval = 5.0
    admin("stop-mirror", "site-b")
    try:
        seen = None
        for cycle in (1, 2):
            facts = p.cycle()
            pool = next(
                v.facts
                for k, v in p.inventory.objects.items()
                if k.cluster == "site-b" and k.kind == "RbdPool"
            )
            if facts["site-b"].get("class") != "healthy" or pool.get("daemon_health") != "OK":
                seen = cycle
                break
            time.sleep(interval)
        assert seen is not None, f"daemon stop not seen in two cycles: {facts}"
    finally:
        admin("start-mirror", "site-b")
    p.until(
        lambda f: states(f) == ("up+stopped", "up+replaying") and f["site-b"]["class"] == "healthy",
        timeout=180,
    )
