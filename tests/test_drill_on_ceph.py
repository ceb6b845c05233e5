"""The DR drill on real Ceph (marker ``ceph``): planned switches are silent, real breakage is not.

Two `auditd run` processes (probe.interval at its 60 s default and at 10 s) watch the two-site
lab while tests/ceph_drill.py drives Ramen-style failovers and failbacks, with and without a
DRPC in Relocating/FailingOver. Then, on the same lab: a forced promotion (split brain), an
image whose mirroring is disabled under a live PVC, and a cephx key that cannot read; the
forced promotion comes last (this file runs after test_ceph_lab.py) and, in CI, is not undone.
Slow (about 14 minutes): it is the proof that a DR drill does not page anyone.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ceph_drill import IMAGE, POOL, Drill, Lab

pytestmark = pytest.mark.ceph
CYCLES = int(os.environ.get("AUDITD_DRILL_CYCLES", "3"))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    base = Path(os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    if not (base / ".up").exists():
        if os.environ.get("AUDITD_REQUIRE_CEPH") == "1":
            pytest.fail(f"the Ceph lab is required but not up in {base}")
        pytest.skip(f"no Ceph lab in {base} (scripts/ceph-lab.sh up)")
    lab = Lab(base)
    lab.wait_steady("dr1")
    yield lab


def _wait(pred, timeout: float, every: float = 1.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


@pytest.mark.timeout(600 + 240 * CYCLES)
def test_planned_switches_are_silent_and_each_is_one_episode(lab: Lab, tmp_path: Path) -> None:
    drill = Drill(lab, tmp_path)
    try:
        drill.start()
        time.sleep(20)  # both daemons listed and probed the steady pair
        for i in range(2 * CYCLES):  # a cycle: failover and failback
            drill.switch(drpc=i % 3 == 1)
            # Nobody fails back seconds after a failover: the slower daemon gets to look at
            # the settled pair before the next switch (else two switches are one to it).
            time.sleep(max(drill.intervals) + 10)
    finally:
        drill.stop()
    posted = drill.slack_messages()
    assert posted == [], [m.get("text") for m in posted]
    for w in drill.watchers:
        assert drill.fired(w) == [], (w.name, drill.fired(w))
        episodes = drill.episodes(w)
        summary = [(e.from_cluster, e.to_cluster, e.rto_seconds, e.ended_at) for e in episodes]
        assert len(episodes) == len(drill.switches), (w.name, summary)
        for e, s in zip(episodes, drill.switches, strict=True):
            assert (e.from_cluster, e.to_cluster) == (s.old, s.new), (w.name, summary)
            assert e.ended_at is not None and e.rto_seconds is not None, (w.name, summary)
            # From the VR asking for secondary to the new PVC Bound on a primary image, as the
            # daemon could see it: within the switch's real duration plus a probe cycle.
            assert 0 < e.rto_seconds <= (s.settled - s.started) + w.interval + 10, (w.name, summary)


@pytest.mark.timeout(600)
def test_disabled_image_under_a_live_pvc_is_critical(lab: Lab, tmp_path: Path) -> None:
    # A shorter for-duration than the 2m default: the same rule, a shorter test.
    drill = Drill(
        lab, tmp_path, intervals=(10,), extra={"rules.image-not-mirrored": {"for": "30s"}}
    )
    image = "csi-vol-0010"
    lab.rbd("dr1", "create", "--size", "16M", f"{POOL}/{image}")
    lab.rbd("dr1", "mirror", "image", "enable", f"{POOL}/{image}", "snapshot")
    try:
        assert _wait(lambda: lab.status("dr2", image).get("state") == "up+replaying", 120)
        drill.start()
        from auditd.sim import objects
        from auditd.sources.kube.kinds import PV, PVC, VR

        k = drill.kube["dr1"]
        k.create(PV, objects.pv("pv-10", "app", "data-10", image))
        k.create(PVC, objects.pvc("data-10", "app", volume="pv-10"))
        k.create(VR, objects.vr("data-10", "app", "data-10"))
        time.sleep(15)
        w = drill.watchers[0]
        assert drill.fired(w) == []
        disabled = time.monotonic()
        lab.rbd("dr1", "mirror", "image", "disable", f"{POOL}/{image}")
        assert _wait(
            lambda: any(r == "image-not-mirrored" for r, _, _ in drill.fired(w)), 90, every=2
        ), drill.fired(w)
        print(f"image-not-mirrored critical {time.monotonic() - disabled:.0f}s after disable")
        assert ("image-not-mirrored", f"dr1-dr2/{POOL}/{image}", "critical") in drill.fired(w)
    finally:
        drill.stop()
        lab.rbd("dr1", "rm", f"{POOL}/{image}", check=False)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("caps", ["no-mon-read", "no-osd"])
def test_a_probe_key_that_cannot_read_is_a_blind_spot_never_healthy(
    lab: Lab, tmp_path: Path, caps: str
) -> None:
    user = f"auditd-{caps}"
    mon = 'allow command "service dump"' if caps == "no-mon-read" else "profile rbd"
    osd = "profile rbd pool=replicapool" if caps == "no-mon-read" else "allow r pool=nothing"
    keyring = tmp_path / f"{user}.keyring"
    subprocess.run(
        [
            "ceph", "--cluster", "site-b", "-c", str(lab.base / "site-b" / "ceph.conf"),
            "auth", "get-or-create", f"client.{user}", "mon", mon, "osd", osd, "-o", str(keyring),
        ],
        check=True, capture_output=True, timeout=60, env=lab.env,
    )  # fmt: skip
    drill = Drill(
        lab,
        tmp_path,
        intervals=(10,),
        extra={"probe": {"blind_after": "20s"}},
        ceph_override={
            "dr2": {
                "conf": str(lab.base / "site-b" / "auditd.conf"),
                "user": user,
                "keyring": str(keyring),
            }
        },
    )
    try:
        drill.start()
        w = drill.watchers[0]
        assert _wait(
            lambda: any(r == "audit-blind-spot" for r, _, _ in drill.fired(w)), 90, every=2
        )
        fired = drill.fired(w)
        assert ("audit-blind-spot", "cluster/dr2", "critical") in fired
        # Never "daemon down": the pool rule needs a probe that worked.
        assert not [f for f in fired if f[0] == "pool-mirroring-unhealthy"], fired
        with w.session() as s:
            from sqlalchemy import select

            from auditd.store.models import ObjectRow

            images = [
                r.facts.get("class")
                for r in s.scalars(select(ObjectRow).where(ObjectRow.kind == "RbdImage"))
                if r.cluster == "dr2"
            ]
        assert "healthy" not in images
    finally:
        drill.stop()


@pytest.mark.timeout(900)
def test_forced_promotion_is_split_brain_within_two_cycles(lab: Lab, tmp_path: Path) -> None:
    drill = Drill(lab, tmp_path, intervals=(10,))
    w = None
    try:
        drill.start()
        w = drill.watchers[0]
        time.sleep(15)
        forced = time.monotonic()
        lab.promote("dr2", force=True)
        # Ceph "shows it" once both records claim primary, each written after the other's
        # promotion: dr2's after its force-promote ("orphan (force promoting)" comes first),
        # dr1's at its next rewrite (<= 30 s later). Two probe cycles after that, at most.
        shown = _split_brain_shown(lab)
        assert _wait(lambda: any(r == "split-brain" for r, _, _ in drill.fired(w)), 2 * 10 + 5)
        took = time.monotonic()
        # The alert is posted by the outbox just after the violation commits: wait for it.
        assert _wait(
            lambda: any("split-brain" in m.get("text", "") for m in drill.slack_messages()), 15
        )
        print(
            f"split brain critical {took - forced:.0f}s after the forced promotion, "
            f"{took - shown:.0f}s after Ceph showed it"
        )
    finally:
        drill.stop()
        # In CI the lab is torn down after this, the last test on it; elsewhere, recover: the
        # old primary diverged, so demote it, resync it from dr2, then fail back.
        if os.environ.get("CI") != "true":
            _recover_from_split_brain(lab)


def _split_brain_shown(lab: Lab, timeout: float = 120) -> float:
    """When both sites' records claim primary, dr1's written after dr2's first one."""
    promoted = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a, b = lab.status("dr1"), lab.status("dr2")
        primary = "local image is primary"
        if promoted is None and b.get("description") == primary:
            promoted = b.get("last_update")
        if promoted and a.get("description") == primary and a.get("last_update", "") > promoted:
            return time.monotonic()
        time.sleep(1)
    raise AssertionError("Ceph never showed both sides primary")


def _recover_from_split_brain(lab: Lab) -> None:
    lab.rbd("dr1", "mirror", "image", "demote", f"{POOL}/{IMAGE}", check=False)
    lab.rbd("dr1", "mirror", "image", "resync", f"{POOL}/{IMAGE}", check=False)
    lab.wait_steady("dr2", timeout=300)
    lab.rbd("dr2", "mirror", "image", "demote", f"{POOL}/{IMAGE}")
    lab.promote("dr1")
    lab.wait_steady("dr1")
