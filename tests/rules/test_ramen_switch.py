"""A Ramen application through two switches, on the real Ceph records taken every second.

The capture's switches (tests/data/rbd/transients/) with what Ramen does around them: its DRPC
on the hub moves (FailingOver, then Relocating) and comes to rest; the VRG and the consistency
group on the old primary turn secondary and stay; on the new primary they appear, the VRG first
Progressing, then protected. The Ramen and group rules judge with no for-duration at all here
(a finding fires the moment it is made): none may fire, and each switch is still one episode.
The same replay with a VRG that breaks, or a DRPC that never finishes, fires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from switch_replay import CLAIM, CONFIG, NS, SITE_OF, Capture, Replay, ramen_switches

from auditd.daemon.items import Item
from auditd.sim import objects

CAPTURE = Capture.load()
START = min(t[0] for t in CAPTURE.times.values())
END = CAPTURE.action("force-promote") - timedelta(seconds=1)
WITH_HUB = {
    "clusters": [*CONFIG["clusters"], {"name": "hub", "role": "hub"}],
    "pairs": [{**CONFIG["pairs"][0], "hub": "hub"}],
}
# Every Ramen and group rule at once, but the one whose finding is "an action is under way".
AT_ONCE = {
    rule: {"for": "0s"}
    for rule in (
        "vrg-not-protected",
        "group-split",
        "group-on-secondary",
        "ramen-rpo-disagreement",
        "drpc-placement-disagrees",
    )
}
ACTIONS = (("dr1", "dr2", "Failover", "FailingOver", "FailedOver"),
           ("dr2", "dr1", "Relocate", "Relocating", "Relocated"))  # fmt: skip


class Ramen:
    """Ramen's objects for the application `app`: DRPC on the hub, VRG and group per cluster."""

    def __init__(self, r: Replay) -> None:
        self.r = r
        self.seen: set[tuple[str, str]] = set()

    def put(self, cluster: str, kind: str, obj: dict[str, Any]) -> Item:
        typ = "MODIFIED" if (cluster, kind) in self.seen else "ADDED"
        self.seen.add((cluster, kind))
        return self.r.event(cluster, kind, obj, typ)

    def drpc(self, action: str | None, phase: str, progression: str, failover_to: str) -> Item:
        """As Ramen keeps it: preferredCluster stays where the application was deployed (and
        where a relocate brings it back), failoverCluster names where a failover takes it."""
        obj = objects.drpc("app", NS, "dr1")
        obj["spec"].update(action=action, failoverCluster=failover_to)
        obj["status"] = {"phase": phase, "progression": progression}
        return self.put("hub", "DRPlacementControl", obj)

    def vrg(self, cluster: str, state: str, reason: str | None = None) -> Item:
        obj = objects.vrg("app", NS, state)
        if reason is not None:  # DataReady not True yet, for this reason
            ready = obj["status"]["conditions"][0]
            ready["status"], ready["reason"] = "False", reason
        return self.put(cluster, "VolumeReplicationGroup", obj)

    def group(self, cluster: str, state: str) -> Item:
        return self.put(
            cluster, "VolumeGroupReplication", objects.vgr("app-group", NS, [CLAIM], state)
        )


def plan(
    r: Replay, broken_vrg: bool = False, finishes: bool = True, failover_to: str = "dr2"
) -> list[tuple[datetime, list[Item]]]:
    ramen = Ramen(r)
    steps = ramen_switches(r, CAPTURE, START)
    steps.append(
        (START, [ramen.drpc(None, "Deployed", "Completed", failover_to), ramen.vrg("dr1", "primary"),
                 ramen.group("dr1", "primary")])
    )  # fmt: skip
    after = START
    for old, new, action, moving, done in ACTIONS:
        at_vr = CAPTURE.action(f"vr-secondary {SITE_OF[old]}", after=after)
        moved = CAPTURE.action(f"k8s-moved {SITE_OF[old]}", after=at_vr)
        after = moved
        steps += [
            (at_vr - timedelta(seconds=2), [ramen.drpc(action, moving, "PreparingFinalSync", failover_to)]),
            (at_vr, [ramen.vrg(old, "secondary"), ramen.group(old, "secondary")]),
            (moved, [ramen.vrg(new, "primary", reason="Progressing"), ramen.group(new, "primary")]),
            (moved + timedelta(seconds=20),
             [ramen.vrg(new, "primary", reason="Error" if broken_vrg else None)]),
        ]  # fmt: skip
        if finishes:
            steps.append(
                (
                    moved + timedelta(seconds=30),
                    [ramen.drpc(action, done, "Completed", failover_to)],
                )
            )
    return sorted(steps, key=lambda s: s[0])


def test_a_ramen_application_switched_twice_is_silent_with_one_episode_each(
    tmp_path: Path,
) -> None:
    r = Replay(tmp_path, CAPTURE, 10, sections=WITH_HUB, **AT_ONCE)
    r.run(END, plan(r))
    assert r.fired() == [] and r.notifications() == 0
    episodes = r.episodes()
    assert [(e.from_cluster, e.to_cluster) for e in episodes] == [("dr1", "dr2"), ("dr2", "dr1")]
    assert all(e.ended_at is not None for e in episodes)


def test_ramen_placing_the_failover_where_ceph_did_not_promote_fires(tmp_path: Path) -> None:
    """The same storage switches, but Ramen's DRPC says it failed over to dr1 (a
    failoverCluster naming the wrong site): at rest after the failover, it disagrees with
    Ceph, which promoted dr2."""
    r = Replay(tmp_path, CAPTURE, 10, sections=WITH_HUB, **AT_ONCE)
    r.run(END, plan(r, failover_to="dr1"))
    fired = {(rule, subject) for rule, subject, _ in r.fired()}
    assert fired == {("drpc-placement-disagrees", "hub/DRPlacementControl/app/app")}, fired


def test_a_vrg_that_errors_after_the_switch_fires(tmp_path: Path) -> None:
    r = Replay(tmp_path, CAPTURE, 10, sections=WITH_HUB, **AT_ONCE)
    r.run(END, plan(r, broken_vrg=True))
    fired = {(rule, subject) for rule, subject, _ in r.fired()}
    assert fired == {
        ("vrg-not-protected", "dr2/VolumeReplicationGroup/app/app"),
        ("vrg-not-protected", "dr1/VolumeReplicationGroup/app/app"),
    }, fired


def test_a_drpc_that_never_finishes_fires_and_holds_back_what_its_action_explains(
    tmp_path: Path,
) -> None:
    r = Replay(
        tmp_path, CAPTURE, 10, sections=WITH_HUB, **AT_ONCE,
        **{"drpc-progression-stuck": {"for": "30s"}},
    )  # fmt: skip
    r.run(END, plan(r, broken_vrg=True, finishes=False))
    fired = {(rule, subject) for rule, subject, _ in r.fired()}
    # The broken VRG is part of an action Ramen has not finished: that action is the alert.
    assert fired == {("drpc-progression-stuck", "hub/DRPlacementControl/app/app")}, fired
