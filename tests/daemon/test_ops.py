"""The operations surface of a running daemon: /metrics, /healthz, /readyz, over real HTTP,
against the simulated clusters and a stand-in `rbd` replaying real captures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from helpers import wait_until
from ops_client import get, value
from rbd_site import Site

from auditd.clock import SYSTEM
from auditd.daemon.ops_http import readiness
from auditd.daemon.runner import Daemon
from auditd.sim import objects
from auditd.sources.kube.kinds import PV, PVC


def test_metrics_health_and_readiness_of_a_running_daemon(
    tmp_path: Path, clusters: dict[str, Any], make_config: Any
) -> None:
    site = Site(tmp_path, "site-a")
    replica = Site(tmp_path, "site-b")
    cfg = make_config(
        clusters=[
            {
                "name": "dr1",
                "kubeconfig": str(clusters["kubeconfig"]),
                "context": "dr1",
                "role": "primary",
                "ceph": {
                    "conf": str(site.dir / "ceph.conf"),
                    "rbd_command": [sys.executable, "-m", "auditd.sim.fakerbd"],
                },
            },
            {
                "name": "dr2",
                "kubeconfig": str(clusters["kubeconfig"]),
                "context": "dr2",
                "role": "secondary",
                "ceph": {
                    "conf": str(replica.dir / "ceph.conf"),
                    "rbd_command": [sys.executable, "-m", "auditd.sim.fakerbd"],
                },
            },
        ],
        probe={"interval": "1s", "jitter": "0s", "slow_interval": "1h", "sample_every": "1s"},
        alerts={"console": True},
        # One incident for the stray claim: its PV is the same mistake, said twice.
        rules={"pv-on-secondary": {"enabled": False}},
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert daemon.ops is not None
        port = daemon.ops.port
        assert get(port, "/healthz") == (200, "ok\n")
        wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=20)
        assert get(port, "/readyz")[1].startswith("ready: 2 cluster(s) synced")
        assert get(port, "/nope")[0] == 404

        # A PVC on dr2 bound to the replica: dr2's image is non-primary (storage truth).
        clusters["dr2"].create(PV, objects.pv("pv-stray", "ns", "stray", "csi-vol-0001"))
        clusters["dr2"].create(PVC, objects.pvc("stray", "ns", volume="pv-stray"))
        wait_until(
            lambda: (
                value(
                    port,
                    "auditd_violations_firing",
                    pair="dr1-dr2",
                    rule="pvc-on-secondary",
                    severity="warning",
                    cluster="dr2",
                    namespace="ns",
                )
                == 1
            ),
            timeout=15,
        )
        assert (
            value(port, "auditd_rule_firings_total", rule="pvc-on-secondary", severity="warning")
            == 1
        )
        wait_until(
            lambda: (value(port, "auditd_probe_duration_seconds_count",
                           cluster="dr1", pool="replicapool", kind="status") or 0) >= 1,
            timeout=15,
        )  # fmt: skip
        # The capture's image is days old for the clock: unknown at first sight (a dead
        # rbd-mirror, or a clock behind?), stale once probes show it has not moved past a
        # rewrite (45 s); lag is measured from the capture's snapshot time.
        img = {"cluster": "dr1", "pool": "replicapool", "image": "csi-vol-0001"}
        wait_until(lambda: value(port, "auditd_rbd_image_state", **img, state="stale") == 1, 70)
        assert value(port, "auditd_rbd_image_state", **img, state="healthy") is None
        pool = {"cluster": "dr1", "pool": "replicapool"}
        assert value(port, "auditd_rbd_images", **pool, state="stale") == 1
        assert value(port, "auditd_rbd_images", **pool, state="healthy") == 0
        wait_until(lambda: value(port, "auditd_watch_stream_up", cluster="dr2",
                                 kind="PersistentVolumeClaim") == 1, timeout=15)  # fmt: skip
        wait_until(
            lambda: value(port, "auditd_outbox_notifications", status="sent") == 1, timeout=15
        )  # the incident's message; its alert is folded into it
        assert value(port, "auditd_outbox_notifications", status="grouped") == 1
        # The writer's own pace: every committed batch measured, nothing left waiting.
        assert (value(port, "auditd_ingest_delay_seconds_count") or 0) >= 3
        assert value(port, "auditd_ingest_queue_items") is not None
        site.scenario("auth")
        wait_until(
            lambda: (value(port, "auditd_probe_errors_total",
                           cluster="dr1", pool="replicapool", kind="auth") or 0) >= 1,
            timeout=15,
        )  # fmt: skip
        assert value(port, "auditd_ready") == 1
    finally:
        daemon.stop()
    # After a restart (probes failing now, so no new image state) the gauges start from the
    # history, not empty.
    again = Daemon(cfg)
    again.start()
    try:
        assert again.ops is not None
        img = {"cluster": "dr1", "pool": "replicapool", "image": "csi-vol-0001"}
        # The last probe before the restart failed: unknown, never the last good state.
        assert value(again.ops.port, "auditd_rbd_image_state", **img, state="unknown") == 1
        assert value(again.ops.port, "auditd_rbd_image_state", **img, state="stale") is None
        pool = {"cluster": "dr1", "pool": "replicapool"}
        assert value(again.ops.port, "auditd_rbd_images", **pool, state="unknown") == 1
        assert value(again.ops.port, "auditd_rbd_images", **pool, state="stale") == 0
    finally:
        again.stop()


def h(cluster: str, **state: Any) -> dict[str, Any]:
    base = {"cluster": cluster, "synced": False, "absent": False, "connected": False, "errors": 0}
    return {**base, **state}


def test_readiness_waits_for_every_reachable_cluster_only() -> None:
    assert readiness([h("dr1", synced=True), h("dr1", absent=True)])[0]
    ok, why = readiness([h("dr1", synced=True), h("dr2", connected=True)])
    assert not ok and why == "first sync not done: dr2"
    # dr2 never answered: an alert (audit-blind-spot), not a reason to restart auditd.
    ok, why = readiness([h("dr1", synced=True), h("dr2", errors=3), h("dr2", errors=1)])
    assert ok and "unreachable, not waited for: dr2" in why
    # A cluster that synced once and then broke stays ready (the watch resumes).
    assert readiness([h("dr1", synced=True, errors=5)])[0]


def test_ops_listen_is_validated(make_config: Any) -> None:
    import pytest

    from auditd.config import ConfigError

    with pytest.raises(ConfigError, match="host:port"):
        make_config(ops={"listen": "9464"})
    assert make_config(ops={"listen": ""}).ops.listen == ""


def test_time_auditd_was_not_running_is_a_blind_spot_in_the_report(
    tmp_path: Path, clusters: dict[str, Any], make_config: Any
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from auditd.report.query import load_report
    from auditd.store.db import make_engine, session_factory
    from auditd.store.models import StreamHealthRow

    cfg = make_config(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    first = Daemon(cfg)
    first.start()
    assert first.wait_synced(20)
    first.stop()
    # The previous run's last heartbeat was 40 minutes ago (as if it died then).
    engine = make_engine(cfg.effective_database_url())
    sessions = session_factory(engine)
    died = SYSTEM.now() - timedelta(minutes=40)
    with sessions.begin() as s:
        s.execute(update(StreamHealthRow).values(reported_at=died))
    # While it is down, the report says so: open blind spots and a note, never a quiet window.
    with sessions() as s:
        down = load_report(s, died - timedelta(hours=1), SYSTEM.now())
    now_blind = [b for b in down.blind_spots if b["what"] == "auditd not running"]
    assert sorted(b["cluster"] for b in now_blind) == ["dr1", "dr2"]
    assert all(b["ended_at"] is None and b["seconds"] >= 2399 for b in now_blind)
    assert any("auditd has not reported since" in n for n in down.notes)
    second = Daemon(cfg)
    second.start()
    try:
        assert second.wait_synced(20)

        def gap() -> list[dict[str, Any]]:
            with sessions() as s:
                data = load_report(s, died - timedelta(hours=1), SYSTEM.now())
            return [
                b
                for b in data.blind_spots
                if b["what"] == "auditd not running" and b["ended_at"] is not None
            ]

        wait_until(lambda: len(gap()) == 2, timeout=15)
        spots = gap()
        assert sorted(b["cluster"] for b in spots) == ["dr1", "dr2"]
        assert all(2390 < b["seconds"] < 2460 and b["ended_at"] for b in spots)
    finally:
        second.stop()
    # No alert for it: by the time auditd knows, it is over (the report is where it shows).
    with sessions() as s:
        data = load_report(s, died - timedelta(hours=1), SYSTEM.now())
    assert data.violations == []
    engine.dispose()
