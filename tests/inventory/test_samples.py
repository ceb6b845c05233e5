"""Lag samples: coarse in the database, yet the worst lag between two samples is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from auditd.clock import SYSTEM
from auditd.config import parse_config
from auditd.daemon.ingest import Ingestor
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim.captures import pool_status
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import MeasurementRow

T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def probe(at: datetime, synced_ago: float) -> ProbeResult:
    """dr2's healthy capture, its last snapshot ``synced_ago`` seconds before ``at``."""
    status = parse_pool_status(pool_status("healthy", "dr2", at - timedelta(seconds=synced_ago)))
    return ProbeResult("dr2", "replicapool", "status", at, 0.1, status=status)


def test_a_sample_holds_the_worst_lag_since_the_previous_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    config = parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
            "probe": {"sample_every": "30m"},
        }
    )
    ingest = Ingestor(sessions, Inventory(), RuleEngine(config), {}, [])
    for minutes, lag in ((0, 10), (10, 900), (20, 30), (30, 20), (40, 15)):
        at = T + timedelta(minutes=minutes)
        ingest.process([probe(at, lag)], at)
    with sessions() as s:
        rows = s.execute(
            select(MeasurementRow.at, MeasurementRow.lag_seconds).order_by(MeasurementRow.at)
        ).all()
    # Two samples in 40 minutes; the second carries the 15-minute spike seen between them.
    # (The capture itself was taken some seconds after its last snapshot: base.)
    base = round(rows[0][1] or 0) - 10
    assert [(at.replace(tzinfo=UTC), round(lag or 0)) for at, lag in rows] == [
        (T, 10 + base),
        (T + timedelta(minutes=30), 900 + base),
    ]
    engine.dispose()


def test_status_calls_a_probe_stale_after_the_configured_intervals(tmp_path: Path) -> None:
    from auditd.report.status import load_status
    from auditd.store.models import ProbeHealthRow, StreamHealthRow

    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = SYSTEM.now()
    with session_factory(engine).begin() as s:
        s.add(StreamHealthRow(cluster="dr1", kind="PersistentVolumeClaim", state="ok",
                              connected=True, synced=True, lists=1, relists=0, errors=0,
                              bad_events=0, reported_at=now))  # fmt: skip
        s.add(ProbeHealthRow(cluster="dr1", pool="replicapool", state="ok",
                             last_attempt_at=now - timedelta(minutes=4), last_success_at=None,
                             duration_ms=80, consecutive_failures=0, failures=0))  # fmt: skip
    with session_factory(engine)() as s:
        # probe.interval 1m x 3: four minutes without an attempt is stale...
        [p] = load_status(s, now, timedelta(minutes=3))["probes"]
        assert p["state"] == "stale"
        # ...with a 5-minute interval it is not yet.
        [p] = load_status(s, now, timedelta(minutes=15))["probes"]
        assert p["state"] == "ok"
    engine.dispose()
