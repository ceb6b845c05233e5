"""The day DR is needed, on real Ceph records: the primary site is lost (its API server gone,
its `rbd` hanging to the timeout), the survivor is force-promoted and its PVC/PV/VR created, the
lost site comes back still primary with its old objects, and is demoted, resynced and cleaned up
as Ramen recovers it.

The survivor's records are the capture's (tests/data/rbd/transients/: a forced promotion of
site-b while site-a kept running, which is what a lost site's disks hold when it returns).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from paths import RBD
from switch_replay import CLAIM, NS, Capture, Replay, ramen_switches

from auditd.sim import objects
from auditd.store.models import ViolationRow

CAPTURE = Capture.load()
START = min(t[0] for t in CAPTURE.times.values())
FORCED = CAPTURE.action("force-promote site-b")
LOST = FORCED - timedelta(seconds=25)
CREATED = FORCED + timedelta(seconds=15)  # the operator creates PVC/PV/VR on the survivor
BACK = FORCED + timedelta(seconds=50)  # site-a's disks and daemons return, un-fenced
DEMOTED = CAPTURE.action("demote site-a", after=FORCED)
CLEANED = DEMOTED + timedelta(seconds=10)  # Ramen deletes the old PVC/PV/VR
SETTLED = CAPTURE.action("demote site-b", after=FORCED) - timedelta(seconds=1)


def _replay(tmp: Path, interval: int) -> Replay:
    # A blind spot after 30 s of failing probes, so that the loss here is long enough to page.
    return Replay(tmp, CAPTURE, interval, sections={"probe": {"blind_after": "30s"}})


def _fired(r: Replay, since: datetime) -> set[tuple[str, str | None]]:
    with r.sessions() as s:
        rows = s.query(ViolationRow).filter(ViolationRow.fired_at.is_not(None)).all()
        return {(v.rule, v.cluster) for v in rows if v.fired_at and v.fired_at >= since}


@pytest.mark.parametrize("interval", [60, 10])
def test_a_lost_site_is_blind_and_unfenced_never_split_brain_from_last_known(
    tmp_path: Path, interval: int
) -> None:
    r = _replay(tmp_path, interval)
    plan = ramen_switches(r, CAPTURE, START)
    r.run(LOST, plan)
    assert r.fired() == []
    r.lost["dr1"] = r.clock.now()
    r.run(BACK, [(CREATED, r.volume("dr2", "ADDED"))])
    during = {rule for rule, _ in _fired(r, LOST)}
    assert during == {"audit-blind-spot", "old-primary-not-fenced"}, r.fired()
    episodes = r.episodes()
    last = episodes[-1]
    assert (last.trigger, last.from_cluster, last.to_cluster) == ("forced, peer lost", "dr1", "dr2")
    assert last.ended_at is None  # the old side is owed its fencing
    # RTO: from the first sign (the survivor's forced record) to it serving (PVC Bound there).
    assert last.rto_seconds is not None and 0 <= last.rto_seconds <= 15 + interval + 25


def test_the_lost_site_returning_primary_is_split_brain_then_recovered(tmp_path: Path) -> None:
    interval = 10
    r = _replay(tmp_path, interval)
    r.run(LOST, ramen_switches(r, CAPTURE, START))
    r.lost["dr1"] = r.clock.now()
    r.run(BACK, [(CREATED, r.volume("dr2", "ADDED"))])
    episodes_before = len(r.episodes())
    del r.lost["dr1"]
    back = r.clock.now()
    r.run(SETTLED, [(CLEANED, r.volume("dr1", "DELETED"))])
    fired = r.firing_at()
    assert "split-brain" in fired, r.fired()
    # Its records are readable at once: critical within two probe cycles.
    assert fired["split-brain"] - back <= timedelta(seconds=2 * interval)
    # One episode for the whole story; it ends when the old side is fenced and clean.
    assert len(r.episodes()) == episodes_before
    last = r.episodes()[-1]
    assert last.ended_at is not None, last.steps
    with r.sessions() as s:
        open_ = [
            (v.rule, v.subject)
            for v in s.query(ViolationRow).filter(ViolationRow.resolved_at.is_(None)).all()
            if v.fired_at is not None
        ]
    assert open_ == [], open_


# ------------------------------------------------- a site loss captured on the lab

LOSS = Capture.load(RBD / "site-loss")
L_START = min(t[0] for t in LOSS.times.values())
L_LOST = LOSS.action("lose site-a")
L_PROMOTED = LOSS.action("promoted site-b")
L_BACK = LOSS.action("return site-a")
L_DEMOTED = LOSS.action("demote site-a")
L_END = LOSS.action("demote site-b") - timedelta(seconds=1)  # the failback's start


@pytest.mark.parametrize("interval", [60, 10])
def test_a_captured_site_loss_replayed(tmp_path: Path, interval: int) -> None:
    """The real records of a lost site (frozen mon, mgr, rbd-mirror): during the loss only
    the blind spot, the fencing finding and the survivor's pool warning; split brain within
    two probe cycles of the site's return; after Ramen's recovery nothing; one episode."""
    r = Replay(tmp_path, LOSS, interval, sections={"probe": {"blind_after": "30s"}})
    r.run(L_LOST, [(L_START, r.classes() + r.volume("dr1", "ADDED"))])
    assert r.fired() == []
    r.lost["dr1"] = r.clock.now()
    r.run(L_BACK, [(L_PROMOTED + timedelta(seconds=15), r.volume("dr2", "ADDED"))])
    during = {rule for rule, _ in _fired(r, L_LOST)}
    assert {"audit-blind-spot", "old-primary-not-fenced"} <= during, r.fired()
    assert during <= {"audit-blind-spot", "old-primary-not-fenced", "pool-mirroring-unhealthy"}
    del r.lost["dr1"]
    back = r.clock.now()
    secondary = objects.vr(CLAIM, NS, CLAIM, "secondary")
    r.run(
        L_END,
        [
            (
                L_DEMOTED - timedelta(seconds=2),
                [r.event("dr1", "VolumeReplication", secondary, "MODIFIED")],
            ),
            (L_DEMOTED + timedelta(seconds=5), r.volume("dr1", "DELETED")),
        ],
    )
    fired = r.firing_at()
    assert "split-brain" in fired and fired["split-brain"] - back <= 2 * timedelta(seconds=interval)
    episodes = [e for e in r.episodes() if e.trigger == "forced, peer lost"]
    assert len(episodes) == 1 and episodes[0].rto_seconds is not None
    with r.sessions() as s:
        open_ = [v.rule for v in s.query(ViolationRow).filter(ViolationRow.state == "firing")]
    if interval == 10:  # the 60 s daemon's next look after the resync is past the capture
        assert open_ == [] and episodes[0].ended_at is not None, (open_, episodes[0].steps)
