"""Stream health: its coarse state, the audit-blind-spot rule, and `auditd status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from auditd.clock import SYSTEM, ManualClock
from auditd.config import parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import HealthReport
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.health import NOT_CURRENT, StreamHealth, stream_state
from auditd.sources.kube.kinds import PVC
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow, StreamHealthRow, TransitionRow, ViolationRow

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIVE_MIN = timedelta(minutes=5)
TEN_S = timedelta(seconds=10)


def test_stream_state() -> None:
    assert stream_state({"connected": True}, T, FIVE_MIN, TEN_S) == "ok"
    listed = {"connected": False, "synced": True}
    assert (
        stream_state({**listed, "disconnected_since": T - timedelta(seconds=5)}, T, FIVE_MIN, TEN_S)
        == "ok"
    )
    assert (
        stream_state({**listed, "disconnected_since": T - FIVE_MIN}, T, FIVE_MIN, TEN_S) == "blind"
    )
    assert stream_state({"absent": True, "connected": False}, T, FIVE_MIN, TEN_S) == "absent"


def test_a_stream_down_past_the_grace_is_reconnecting_not_ok() -> None:
    """Past a routine reconnect, what auditd holds of the cluster is last-known, not current."""
    lost = {"connected": False, "synced": True, "disconnected_since": T - timedelta(seconds=11)}
    assert stream_state(lost, T, FIVE_MIN, TEN_S) == "reconnecting"
    blip = {**lost, "disconnected_since": T - timedelta(seconds=3)}
    assert stream_state(blip, T, FIVE_MIN, TEN_S) == "ok"
    held = {**lost, "held_since": T - timedelta(minutes=1)}  # auditd's own writer, not the cluster
    assert stream_state(held, T, FIVE_MIN, TEN_S) == "ok"


def test_a_relist_held_by_auditds_own_writer_is_not_the_clusters_blind_spot() -> None:
    """A relist after a failed resume, its pages each held by the writer (a database down,
    then its backlog): the cluster answered every request, so only the time the watcher
    spent on the cluster counts towards reconnecting and blind, not the time held."""
    clock = ManualClock(T)
    h = StreamHealth("dr1", PVC.kind, _clock=clock)
    h.mark_connected()
    h.mark_listed(False, "1")
    h.mark_disconnected()  # the watch failed: a resume, then 410, then a relist
    for _ in range(3):  # three pages, each read in 2 s and held for 4 minutes
        clock.advance(2)
        h.hold(True)
        clock.advance(FIVE_MIN - timedelta(minutes=1))
        assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "ok"  # held
        h.hold(False)  # taken: 2, 4, then 6 s spent on the cluster, 4, 8, then 12 min held
        assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "ok"
    # The cluster itself silent past the grace, and past blind_after: reconnecting, blind.
    clock.advance(5)
    assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "reconnecting"
    clock.advance(FIVE_MIN)
    assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "blind"


def test_a_first_list_whose_pages_are_taken_is_answering_however_long_it_took() -> None:
    """A first list: each page taken says the cluster answers, however long the pages
    before it were held or took to read."""
    clock = ManualClock(T)
    h = StreamHealth("dr1", PVC.kind, _clock=clock)
    clock.advance(FIVE_MIN)  # the first page read slowly
    h.hold(True)
    clock.advance(FIVE_MIN)
    h.hold(False)
    assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "listing"
    clock.advance(FIVE_MIN)  # no answer since: blind
    assert stream_state(h.snapshot(), clock.now(), FIVE_MIN, TEN_S) == "blind"


def _stream(cluster: str, kind: str, connected: bool, since: datetime | None) -> dict[str, Any]:
    h = StreamHealth(cluster, kind)
    h.connected, h.disconnected_since, h.synced = connected, since, True
    return h.snapshot()


def test_blind_spot_fires_once_and_resolves_with_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    config = parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"]}],
        }
    )
    ing = Ingestor(sessions, Inventory(), RuleEngine(config), {}, ["slack"])
    down = T - timedelta(minutes=10)

    def report(at: datetime, ok: bool) -> HealthReport:
        return HealthReport(
            at,
            [
                _stream("dr1", "PersistentVolumeClaim", ok, None if ok else down),
                _stream("dr1", "VolumeReplication", ok, None if ok else down),
                _stream("dr2", "PersistentVolumeClaim", True, None),
            ],
        )

    ing.process([report(T, True)], T)  # baseline: no transition, no violation
    ing.process([report(T + timedelta(seconds=5), False)], T + timedelta(seconds=5))
    ing.process(
        [report(T + timedelta(seconds=10), False)], T + timedelta(seconds=10)
    )  # still blind: quiet
    ing.process([report(T + timedelta(seconds=15), True)], T + timedelta(seconds=15))
    with sessions() as s:
        rows = [
            (t.cluster, t.name, t.old, t.new, t.source)
            for t in s.scalars(select(TransitionRow).order_by(TransitionRow.id))
        ]
        assert rows == [
            ("dr1", "PersistentVolumeClaim", "ok", "blind", "health"),
            ("dr1", "VolumeReplication", "ok", "blind", "health"),
            ("dr1", "PersistentVolumeClaim", "blind", "ok", "health"),
            ("dr1", "VolumeReplication", "blind", "ok", "health"),
        ]
        [v] = s.scalars(select(ViolationRow)).all()
        assert (v.rule, v.subject, v.severity, v.state) == (
            "audit-blind-spot",
            "cluster/dr1",
            "critical",
            "resolved",
        )
        assert v.evidence["blind_kinds"] == "PersistentVolumeClaim, VolumeReplication"
        assert [
            n.event for n in s.scalars(select(NotificationRow).order_by(NotificationRow.id))
        ] == ["firing", "resolved"]
        assert {h.state for h in s.scalars(select(StreamHealthRow))} == {"ok"}
    engine.dispose()


def _write_config(tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack) -> Path:
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(
        pair_config_toml(
            clusters["kubeconfig"],
            f"sqlite:///{tmp_path / 'h.db'}",
            slack_base_url=slack.base_url,
            sections={"watch": {"backoff_max": "500ms", "blind_spot_after": "2s"}},
        )
    )
    return cfg


def _run_daemon(cfg: Path, slack: FakeSlack) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "auditd", "run", "-c", str(cfg)],
        env={**__import__("os").environ, "AUDITD_SLACK_TOKEN": slack.token},
        stderr=subprocess.PIPE,
        text=True,
    )


def _status(cfg: Path) -> tuple[int, dict[str, Any]]:
    p = subprocess.run(
        [sys.executable, "-m", "auditd", "status", "-c", str(cfg), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return p.returncode, json.loads(p.stdout)


def test_unreachable_cluster_becomes_a_blind_spot_alert_and_status(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack
) -> None:
    cfg = _write_config(tmp_path, clusters, slack)
    clusters["dr1"].stop()  # dr1 is down from the start
    proc = _run_daemon(cfg, slack)
    try:
        msg = slack.wait_for(1, timeout=30)[0]
        assert msg["text"].startswith("FIRING [critical] audit-blind-spot")
        assert "dr1" in msg["text"] and "PersistentVolumeClaim" in msg["text"]
        deadline = time.monotonic() + 15
        while True:
            rc, doc = _status(cfg)
            states = {(s["cluster"], s["kind"]): s["state"] for s in doc["streams"]}
            settled = (
                states.get(("dr1", "PersistentVolumeClaim")) == "blind"
                and states.get(("dr2", "DRPlacementControl")) == "absent"
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rc == 1 and doc["reporting"] and not doc["healthy"]
        assert states[("dr1", "PersistentVolumeClaim")] == "blind"
        assert states[("dr2", "PersistentVolumeClaim")] == "ok"
        assert states[("dr2", "DRPlacementControl")] == "absent"
        dr1 = next(
            s
            for s in doc["streams"]
            if s["cluster"] == "dr1" and s["kind"] == "PersistentVolumeClaim"
        )
        assert dr1["errors"] >= 1 and "connection" in dr1["last_error"]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    # The daemon is gone: status must not claim anything is fine.
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    with engine.begin() as conn:
        conn.execute(
            StreamHealthRow.__table__.update().values(
                reported_at=SYSTEM.now() - timedelta(minutes=1)
            )
        )
    engine.dispose()
    rc, doc = _status(cfg)
    assert rc == 1 and not doc["reporting"]
    assert {s["state"] for s in doc["streams"]} == {"unknown"}
    table = subprocess.run(
        [sys.executable, "-m", "auditd", "status", "-c", str(cfg)], capture_output=True, text=True
    ).stdout
    assert "NOT reporting" in table and "UNKNOWN" in table


def test_a_cluster_never_reached_is_blind_from_its_first_failure_not_ok() -> None:
    never = {"connected": False, "synced": False, "absent": False, "errors": 1,
             "disconnected_since": T}  # fmt: skip
    assert stream_state(never, T + timedelta(seconds=1), FIVE_MIN, TEN_S) == "blind"
    # Still trying its first list, no failure yet: listing, which is not current either
    # (what is held of the cluster is partial, or last-known), until the list is handed over.
    trying = {**never, "errors": 0}
    assert stream_state(trying, T + timedelta(seconds=1), FIVE_MIN, TEN_S) == "listing"
    assert "listing" in NOT_CURRENT
    # Its list waiting for auditd's own writer is still not a list taken in.
    held = {**trying, "held_since": T}
    assert stream_state(held, T + timedelta(seconds=1), FIVE_MIN, TEN_S) == "listing"
    # A list that hangs for blind_after is a blind spot, as a stream down that long is.
    assert stream_state(trying, T + FIVE_MIN, FIVE_MIN, TEN_S) == "blind"
    # Listed once, then a short disconnection: the watch resumes, nothing is missed.
    dropped = {**never, "synced": True}
    assert stream_state(dropped, T + timedelta(seconds=1), FIVE_MIN, TEN_S) == "ok"


def test_a_pvc_found_while_its_cluster_was_blind_is_announced_once_it_is_back(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack
) -> None:
    """Issue 12, item 1, end to end: dr2 is down past blind_spot_after; meanwhile a PVC is
    created on it (the secondary); when dr2 answers again the relist finds it. Its alert was
    held back by the blind spot while that fired: exactly one FIRING for it reaches Slack."""
    cfg = _write_config(tmp_path, clusters, slack)
    proc = _run_daemon(cfg, slack)
    try:
        time.sleep(3)  # listed both clusters
        dr2 = clusters["dr2"]
        port = int(dr2.url.rsplit(":", 1)[1])
        dr2.stop()
        msg = slack.wait_for(1, timeout=30)[0]
        assert msg["text"].startswith("FIRING [critical] audit-blind-spot") and "dr2" in msg["text"]
        dr2.create(PVC, objects.pvc("stray", "ns"))  # while nobody can see it
        dr2.start(port)

        def stray_firing() -> list[dict[str, Any]]:
            return [
                m
                for m in slack.messages
                if "pvc-on-secondary" in (m.get("text") or "") and m["text"].startswith("FIRING")
            ]

        deadline = time.monotonic() + 40
        while not stray_firing() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # and no second one
        assert len(stray_firing()) == 1, [m.get("text") for m in slack.messages]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
