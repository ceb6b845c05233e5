"""A probe that fails is a blind spot, never healthy: alert, metrics, explain, report share.
And the two probe-timing defects: staleness from rbd-mirror's 30 s rewrite, lag every probe."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from captured_pair import failed, probe
from pipeline import T0, Pipeline, steady
from prometheus_client import generate_latest

from auditd.config import parse_config
from auditd.daemon.metrics import Metrics
from auditd.report.explain import explain_doc
from auditd.report.query import load_report
from auditd.sim.captures import pool_status
from auditd.sources.rbd.parse import classify, parse_pool_status


def failing(p: Pipeline, minutes: float) -> None:
    """dr2's probe fails (dr1's still answers) at T0 + minutes."""
    r = failed("dr2")
    p.at(minutes, probe("dr1", "healthy"), replace(r, at=T0 + timedelta(minutes=minutes)))


def test_a_failing_probe_is_a_blind_spot_alert_and_unknown_everywhere(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    metrics = Metrics()
    p.ingest.metrics = metrics
    steady(p)
    p.at(1, probe("dr1", "healthy"), probe("dr2", "healthy"))
    image = (
        'auditd_rbd_image_state{cluster="dr2",image="csi-vol-0001",pool="replicapool",state="%s"}'
    )
    pool = 'auditd_rbd_images{cluster="dr2",pool="replicapool",state="%s"}'
    text = generate_latest(metrics.registry).decode()
    assert pool % "healthy" + " 1.0" in text and image % "healthy" not in text
    for minutes in (2, 3, 4, 5):
        failing(p, minutes)
    # From the first failure the image reads unknown, not its last good state.
    text = generate_latest(metrics.registry).decode()
    assert image % "unknown" + " 1.0" in text
    assert pool % "healthy" + " 0.0" in text and pool % "unknown" + " 1.0" in text
    assert 'auditd_rbd_image_lag_seconds{cluster="dr2"' not in text
    # Past probe.blind_after (2m): the blind spot is an alert, critical.
    assert ("audit-blind-spot", "cluster/dr2", "firing") in p.violations()
    with p.sessions() as s:
        doc = explain_doc(s, p.config, "replicapool/csi-vol-0001", T0 + timedelta(minutes=5))
        assert doc is not None
        dr2 = next(side for side in doc["sides"] if side["cluster"] == "dr2")
        assert dr2["pool_probe"] == "failing" and dr2["image"]["class"] == "unknown"
        storage = {
            r["rule"]: r["verdict"]
            for r in doc["verdicts"]
            if r["subject"] == "p/replicapool/csi-vol-0001"
            and r["rule"] in ("secondary-not-replaying", "split-brain", "image-missing-on-peer")
        }
        assert storage == dict.fromkeys(storage, "unknown") and len(storage) == 3, storage
        report = load_report(s, T0, T0 + timedelta(minutes=5))
    share = next(
        r for r in report.volumes if r["cluster"] == "dr2" and r["image"] == "csi-vol-0001"
    )
    assert share["healthy_share"] < 0.5  # 4 of 5 minutes unknown: not counted healthy
    # A good probe again: healthy, and the blind spot resolves.
    p.at(6, probe("dr1", "healthy"), probe("dr2", "healthy"))
    assert ("audit-blind-spot", "cluster/dr2", "resolved") in p.violations()
    text = generate_latest(metrics.registry).decode()
    assert pool % "healthy" + " 1.0" in text and image % "unknown" not in text


def test_a_short_probe_interval_does_not_make_healthy_records_stale() -> None:
    # rbd-mirror rewrites a record every 30 s: at a 5 s interval, 3 intervals (15 s) would call
    # a healthy 25-second-old record stale.
    config = parse_config({"probe": {"interval": "5s", "stale_after_intervals": 3}})
    assert config.probe.record_stale_after == timedelta(seconds=90)
    at = T0
    status = parse_pool_status(pool_status("healthy", "dr2", at - timedelta(seconds=29)))
    [image] = [i for i in status.images if i.name == "csi-vol-0001"]
    assert classify(image, at, config.probe.record_stale_after) == "healthy"
    assert classify(image, at + timedelta(minutes=2), config.probe.record_stale_after) == "stale"


def test_the_lag_gauge_moves_every_probe_not_every_sample(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    metrics = Metrics()
    p.ingest.metrics = metrics
    assert p.config.probe.sample_every == timedelta(hours=1)
    steady(p)
    gauge = 'auditd_rbd_image_lag_seconds{cluster="dr2",image="csi-vol-0001",pool="replicapool"}'

    def lag() -> float:
        line = next(
            ln
            for ln in generate_latest(metrics.registry).decode().splitlines()
            if ln.startswith(gauge)
        )
        return float(line.split()[-1])

    first = lag()
    r = probe("dr2", "healthy")
    p.at(1, replace(r, at=r.at + timedelta(minutes=1)))
    assert lag() == first + 60
