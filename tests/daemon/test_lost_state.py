"""Rule state that survives losing memory (issue 20, item 2).

Memory is reset from the history after a lost database session (a commit the fence refused,
daemon/leader.py) and at every start. What the rules judge after that must be what they would
have judged had memory never been lost: a pending violation whose condition stops holding is
dropped, never fired.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from switch_replay import CLAIM, IMAGE, NS, Capture, Replay, ramen_switches

from auditd.daemon.items import HealthReport, Item, Tick
from auditd.sim import objects
from auditd.sources.kube.events import Observed, SnapshotEnd, SnapshotPage, SnapshotStart
from auditd.sources.kube.health import StreamHealth
from auditd.store.models import ObjectRow, TransitionRow

CAPTURE = Capture.load()
START = min(t[0] for t in CAPTURE.times.values())
# Back on dr1 after the capture's two switches, its records settled, before the forced promotion.
HEALTHY = CAPTURE.action("k8s-moved site-b site-a") + timedelta(seconds=30)
FORCED = CAPTURE.action("force-promote site-b")
VR = "VolumeReplication"
PVC_KIND = "PersistentVolumeClaim"


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


def test_after_a_restart_the_stored_records_are_last_known_lag_waits_for_a_probe(
    tmp_path: Path,
) -> None:
    """Found by the convergence harness (auditd down for a minute, no probe in that time): the
    records the last run stored were judged as current at the first tick after the start, so
    the lag counted the downtime and rpo-exceeded fired before any probe had looked."""
    r = Replay(tmp_path, CAPTURE, 30)
    r.run(HEALTHY, ramen_switches(r, CAPTURE, START))
    assert r.fired() == []
    r.restart(down_for=timedelta(minutes=4))  # past 3 x the 1m schedule
    up = r.clock.now()
    r.ingest.process([r.health(), Tick(up)], up)
    assert r.fired() == []
    pools = _pool_probes(r)
    assert pools == {"stale"}, pools  # stored, so explain and the report say so too
    # The first probe of this run answers: the records are current again.
    r.ingest.process([*r.probes(), r.health(), Tick(up)], up)
    assert _pool_probes(r) == {"ok"}


def _pool_probes(r: Replay) -> set[str | None]:
    with r.sessions() as s:
        rows = s.scalars(select(ObjectRow).where(ObjectRow.kind == "RbdPool"))
        return {row.facts.get("probe") for row in rows}


def _open(r: Replay) -> set[tuple[str, str]]:
    return {(v.rule, v.state) for v in r.ingest.active.values()}


def test_a_new_volume_is_not_unmirrored_before_a_probe_has_looked_for_its_image(
    tmp_path: Path,
) -> None:
    """Found by the convergence harness (a volume created while auditd was down, listed at its
    start): a PVC and VR newer than the last probe, whose image that probe could not list, made
    image-not-mirrored fire once its `for` ran out before the next probe. Storage evidence
    older than the objects says nothing about them (as for *-on-secondary)."""
    r = Replay(
        tmp_path,
        CAPTURE,
        60,
        sections={"probe": {"on_demand_gap": "0s"}},  # no probe out of turn: the next is 60 s on
        **{"image-not-mirrored": {"for": "20s"}},
    )
    r.images = set()  # the image does not exist yet
    r.run(HEALTHY, [(START, r.classes())])
    created = r.clock.now()
    r.images = {IMAGE}  # created with its volume: listed from the next probe on
    r.run(FORCED - timedelta(seconds=1), [(created, r.volume("dr1", "ADDED"))])
    assert r.clock.now() - created > timedelta(seconds=20)  # its `for` ran out, no probe came
    assert r.fired() == []


def test_a_kind_listed_empty_before_a_restart_is_resynced_not_taken_as_a_baseline(
    tmp_path: Path,
) -> None:
    """A PVC created while auditd was down, in a kind the last run had listed and found empty:
    the first list after the restart finds a change (late, `resync`), which also makes it an
    object newer than the storage evidence. It used to count as a first-ever list (a baseline),
    because nothing of that kind had been stored."""
    r = Replay(tmp_path, CAPTURE, 10)
    at = START
    listed = StreamHealth("dr2", PVC_KIND, connected=True, synced=True, _clock=r.clock)
    listed.last_list_at = at
    r.ingest.process(
        [*_list("dr2", [], at), HealthReport(at, [listed.snapshot()])],
        at,
    )
    r.restart()
    later = at + timedelta(minutes=5)
    stray = r.event("dr2", PVC_KIND, objects.pvc("stray", NS, volume="pv-x"), "ADDED").object
    r.ingest.process(_list("dr2", [stray], later), later)
    with r.sessions() as s:
        (row,) = s.scalars(
            select(TransitionRow).where(
                TransitionRow.name == "stray", TransitionRow.field == "exists"
            )
        )
    assert (row.source, row.late) == ("resync", True)


def _list(cluster: str, found: list[Observed], at: datetime) -> list[Item]:
    return [
        SnapshotStart(cluster, PVC_KIND, "list", at),
        SnapshotPage(cluster, PVC_KIND, found, "list", at),
        SnapshotEnd(cluster, PVC_KIND, "1", "list", at),
    ]
