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

import pytest
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
        "vrg-pvc-unprotected",
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

    def __init__(self, r: Replay, unlisted: bool = False) -> None:
        self.r = r
        self.seen: set[tuple[str, str]] = set()
        self.unlisted = unlisted  # the VRG selects the claim but never lists it as protected

    def put(self, cluster: str, kind: str, obj: dict[str, Any], at: datetime) -> Item:
        typ = "MODIFIED" if (cluster, kind) in self.seen else "ADDED"
        self.seen.add((cluster, kind))
        return self.r.world.event(cluster, kind, obj, typ, at)  # type: ignore[arg-type]

    def drpc(
        self, at: datetime, action: str | None, phase: str, progression: str, failover_to: str
    ) -> Item:
        """As Ramen keeps it: preferredCluster stays where the application was deployed (and
        where a relocate brings it back), failoverCluster names where a failover takes it."""
        obj = objects.drpc("app", NS, "dr1")
        obj["spec"].update(action=action, failoverCluster=failover_to)
        obj["status"] = {"phase": phase, "progression": progression}
        return self.put("hub", "DRPlacementControl", obj, at)

    def vrg(self, at: datetime, cluster: str, state: str, reason: str | None = None) -> Item:
        obj = objects.vrg("app", NS, state, protected=[] if self.unlisted else [CLAIM])
        if reason is not None:  # DataReady not True yet, for this reason
            ready = obj["status"]["conditions"][0]
            ready["status"], ready["reason"] = "False", reason
        return self.put(cluster, "VolumeReplicationGroup", obj, at)

    def group(self, at: datetime, cluster: str, state: str) -> Item:
        return self.put(
            cluster, "VolumeGroupReplication", objects.vgr("app-group", NS, [CLAIM], state), at
        )


def plan(
    r: Replay,
    broken_vrg: bool = False,
    finishes: bool = True,
    failover_to: str = "dr2",
    unlisted: bool = False,
) -> list[tuple[datetime, list[Item]]]:
    ramen = Ramen(r, unlisted)
    steps = ramen_switches(r, CAPTURE, START)
    steps.append(
        (START, [ramen.drpc(START, None, "Deployed", "Completed", failover_to),
                 ramen.vrg(START, "dr1", "primary"), ramen.group(START, "dr1", "primary")])
    )  # fmt: skip
    after = START
    for old, new, action, moving, done in ACTIONS:
        at_vr = CAPTURE.action(f"vr-secondary {SITE_OF[old]}", after=after)
        moved = CAPTURE.action(f"k8s-moved {SITE_OF[old]}", after=at_vr)
        after = moved
        begun, ready, rest = (
            at_vr - timedelta(seconds=2),
            moved + timedelta(seconds=20),
            moved + timedelta(seconds=30),
        )
        steps += [
            (begun, [ramen.drpc(begun, action, moving, "PreparingFinalSync", failover_to)]),
            (at_vr, [ramen.vrg(at_vr, old, "secondary"), ramen.group(at_vr, old, "secondary")]),
            (moved, [ramen.vrg(moved, new, "primary", reason="Progressing"),
                     ramen.group(moved, new, "primary")]),
            (ready, [ramen.vrg(ready, new, "primary", reason="Error" if broken_vrg else None)]),
        ]  # fmt: skip
        if finishes:
            steps.append((rest, [ramen.drpc(rest, action, done, "Completed", failover_to)]))
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


def test_a_vrg_that_never_lists_the_claim_it_selects_fires_on_each_primary(
    tmp_path: Path,
) -> None:
    """Its conditions all True, but the claim its selector picks is not among its
    protectedPVCs: on dr1 before the failover, on dr2 after it, never during either switch."""
    r = Replay(tmp_path, CAPTURE, 10, sections=WITH_HUB, **AT_ONCE)
    r.run(END, plan(r, unlisted=True))
    fired = {(rule, subject) for rule, subject, _ in r.fired()}
    assert fired == {
        ("vrg-pvc-unprotected", "dr1/VolumeReplicationGroup/app/app"),
        ("vrg-pvc-unprotected", "dr2/VolumeReplicationGroup/app/app"),
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


def test_the_report_shows_the_application_its_last_action_and_both_rtos(tmp_path: Path) -> None:
    from auditd.report.query import load_report
    from auditd.report.render import to_table

    r = Replay(tmp_path, CAPTURE, 10, sections=WITH_HUB)
    r.run(END, plan(r))
    with r.sessions() as s:
        data = load_report(s, START, END)
    [app] = data.applications
    assert (app["application"], app["cluster"], app["phase"]) == ("app/app", "hub", "Relocated")
    assert app["volumes"] == 1
    action = app["last_action"]
    relocate = CAPTURE.action("vr-secondary site-b")
    moved = CAPTURE.action("k8s-moved site-b", after=relocate)
    assert (action["phase"], action["done"]) == ("Relocating", "Relocated")
    # From the DRPC moving (2 s before the VR asked) to it at rest (30 s after the move).
    assert action["ramen_seconds"] == pytest.approx((moved - relocate).total_seconds() + 32, abs=1)
    storage = r.episodes()[-1].rto_seconds
    assert action["storage_rto_seconds"] == storage and storage is not None
    assert app["ramen_rpo_seconds"] is None  # Ramen said no lastGroupSyncTime here
    # Each action is one episode of the application, with its volume's switch under it.
    assert [(a["phase"], a["done"]) for a in app["actions"]] == [
        ("FailingOver", "FailedOver"),
        ("Relocating", "Relocated"),
    ]
    assert [[(e["from"], e["to"]) for e in a["volume_episodes"]] for a in app["actions"]] == [
        [("dr1", "dr2")],
        [("dr2", "dr1")],
    ]
    assert app["last_action"] == app["actions"][-1]
    table = to_table(data)
    assert "APPLICATIONS (RAMEN)" in table and "Relocated (Completed)" in table
    assert "1/1 switched (2 in window)" in table
