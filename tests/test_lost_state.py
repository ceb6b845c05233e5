"""Rule state that survives losing memory (issue 20, item 2).

Memory is reset from the history after a lost database session (a commit the fence refused,
daemon/leader.py) and at every start. What the rules judge after that must be what they would
have judged had memory never been lost: a pending violation whose condition stops holding is
dropped, never fired.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from switch_replay import CLAIM, NS, Capture, Replay, ramen_switches

from auditd.sim import objects

CAPTURE = Capture.load()
START = min(t[0] for t in CAPTURE.times.values())
# Back on dr1 after the capture's two switches, its records settled, before the forced promotion.
HEALTHY = CAPTURE.action("k8s-moved site-b site-a") + timedelta(seconds=30)
FORCED = CAPTURE.action("force-promote site-b")
VR = "VolumeReplication"


def test_a_pending_violation_whose_vr_arrives_after_memory_is_reloaded_never_fires(
    tmp_path: Path,
) -> None:
    """A volume whose VR is re-created (as a provisioner or Ramen does: PVC and PV first, the
    VR a moment later): unprotected-volume is pending meanwhile. Memory reloaded in between
    (the 20 s `for` spans it): the VR must resolve it, as it does without the reload."""
    r = Replay(tmp_path, CAPTURE, 10, **{"unprotected-volume": {"for": "20s"}})
    r.run(HEALTHY, ramen_switches(r, CAPTURE, START))
    assert r.fired() == [] and _open(r) == set()
    vr = objects.vr(CLAIM, NS, CLAIM)
    r.run(HEALTHY + timedelta(seconds=5), [(HEALTHY, [r.event("dr1", VR, vr, "DELETED")])])
    assert _open(r) == {("unprotected-volume", "pending")}
    r.restart()
    back = r.clock.now()
    r.run(FORCED - timedelta(seconds=1), [(back, [r.event("dr1", VR, vr, "ADDED")])])
    assert r.fired() == []
    assert _open(r) == set()


def _open(r: Replay) -> set[tuple[str, str]]:
    return {(v.rule, v.state) for v in r.ingest.active.values()}
