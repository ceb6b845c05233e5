"""The daemon probing both sites on a schedule (stand-in `rbd` replaying real captures)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import wait_until
from rbd_site import Site
from sqlalchemy import func, select

from auditd.sim.world import pair_config_toml
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import MeasurementRow, TransitionRow


def _cli(cfg: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "auditd", *args, "-c", str(cfg), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_probes_record_transitions_samples_and_health(
    tmp_path: Path, clusters: dict[str, Any]
) -> None:
    a, b = Site(tmp_path, "site-a"), Site(tmp_path, "site-b")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    toml = pair_config_toml(
        clusters["kubeconfig"],
        db,
        sections={
            "probe": {"interval": "1s", "jitter": "0s", "slow_interval": "1h", "sample_every": "1h"}
        },
    )
    fake = json.dumps([sys.executable, "-m", "auditd.sim.fakerbd"])
    for name, site in (("dr1", a), ("dr2", b)):
        toml = toml.replace(
            f'name = "{name}"\n',
            f'name = "{name}"\nceph = {{ conf = "{site.dir / "ceph.conf"}", user = "auditd", rbd_command = {fake} }}\n',
        )
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(toml)
    upgrade(db)  # so the test can read while the daemon starts
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditd", "run", "-c", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    engine = make_engine(db)
    sessions = session_factory(engine)

    def probe_transitions() -> list[tuple[str, str, str | None, str | None]]:
        with sessions() as s:
            return [
                (t.cluster, t.field, t.old, t.new)
                for t in s.scalars(
                    select(TransitionRow)
                    .where(
                        TransitionRow.kind == "RbdImage",
                        TransitionRow.source == "probe",
                        TransitionRow.name == "csi-vol-0001",
                    )
                    .order_by(TransitionRow.id)
                )
            ]

    def sampled() -> int:
        with sessions() as s:
            return s.scalar(select(func.count()).select_from(MeasurementRow)) or 0

    try:
        wait_until(
            lambda: ("dr2", "state", None, "up+replaying") in probe_transitions(), timeout=30
        )
        status = _cli(cfg, "status")
        assert {(p["cluster"], p["pool"], p["state"]) for p in status["probes"]} == {
            ("dr1", "replicapool", "ok"),
            ("dr2", "replicapool", "ok"),
        }
        # A planned failover, seen through the probes of both sites.
        a.scenario("failover-1-demoted-site-a")
        b.scenario("failover-1-demoted-site-a")
        wait_until(
            lambda: ("dr1", "state", "up+stopped", "up+unknown") in probe_transitions(), timeout=15
        )
        # Both sites have now shown their four images (one each before): each sampled once.
        wait_until(lambda: sampled() == 4 + 4, timeout=15)
        b.scenario("auth")  # site-b's credentials break
        wait_until(
            lambda: any(
                p["cluster"] == "dr2" and p["state"] == "failing"
                for p in _cli(cfg, "status")["probes"]
            ),
            timeout=15,
        )
        status = _cli(cfg, "status")
        dr2 = next(p for p in status["probes"] if p["cluster"] == "dr2")
        assert (
            "auth" in dr2["last_error"]
            and dr2["consecutive_failures"] >= 1
            and not status["healthy"]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    samples = sampled()
    engine.dispose()
    assert samples == 4 + 4  # probed every second, sampled no more: sample_every is an hour
    # One `mirror pool status` call per site per cycle, never one per image.
    calls = (a.dir / "calls.log").read_text().splitlines()
    assert calls and all(
        c.startswith("mirror pool status replicapool")
        or c.startswith(("mirror pool info", "mirror snapshot schedule"))
        for c in calls
    )
    assert not any("image status" in c for c in calls)
    assert os.path.exists(a.dir / "calls.log")


def test_probe_jobs_never_pile_up(tmp_path: Path, clusters: dict[str, Any]) -> None:
    from auditd.config import parse_config
    from auditd.daemon.runner import Daemon

    site = Site(tmp_path, "site-a")
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'h.db'}",
        "clusters": [
            {
                "name": "dr1",
                "role": "primary",
                "kubeconfig": str(clusters["kubeconfig"]),
                "context": "dr1",
                "ceph": {
                    "conf": str(site.dir / "ceph.conf"),
                    "rbd_command": [sys.executable, "-m", "auditd.sim.fakerbd"],
                },
            },
            {
                "name": "dr2",
                "role": "secondary",
                "kubeconfig": str(clusters["kubeconfig"]),
                "context": "dr2",
            },
        ],
        "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool", "other"]}],
        "probe": {"max_concurrent": 3, "interval": "30s", "slow_interval": "5m"},
        "slack": {"enabled": False},
    }
    daemon = Daemon(parse_config(raw))
    daemon.start()
    try:
        jobs = {j.id: j for j in daemon.scheduler.get_jobs() if j.id.startswith("rbd-")}
        assert sorted(jobs) == [
            "rbd-probe_info:dr1:other",
            "rbd-probe_info:dr1:replicapool",
            "rbd-probe_status:dr1:other",
            "rbd-probe_status:dr1:replicapool",
        ]
        for job in jobs.values():
            assert job.coalesce and job.max_instances == 1 and job.executor == "probes:dr1"
        assert jobs["rbd-probe_status:dr1:replicapool"].trigger.interval.total_seconds() == 30
        assert jobs["rbd-probe_info:dr1:replicapool"].trigger.interval.total_seconds() == 300
        assert daemon.scheduler._lookup_executor("probes:dr1")._pool._max_workers == 3
    finally:
        daemon.stop()


def _daemon_config(tmp_path: Path, clusters: dict[str, Any], probe: dict[str, Any]) -> Any:
    from auditd.config import parse_config

    sites = {"dr1": Site(tmp_path, "site-a"), "dr2": Site(tmp_path, "site-b")}
    raw = {
        "database_url": f"sqlite:///{tmp_path / 'h.db'}",
        "clusters": [
            {
                "name": name,
                "role": role,
                "kubeconfig": str(clusters["kubeconfig"]),
                "context": name,
                "ceph": {
                    "conf": str(sites[name].dir / "ceph.conf"),
                    "rbd_command": [sys.executable, "-m", "auditd.sim.fakerbd"],
                },
            }
            for name, role in (("dr1", "primary"), ("dr2", "secondary"))
        ],
        "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
        "probe": {"jitter": "0s", "slow_interval": "1h", **probe},
        "slack": {"enabled": False},
        "ops": {"listen": "127.0.0.1:0"},
    }
    return parse_config(raw), sites


def _status_calls(site: Site) -> int:
    try:
        lines = (site.dir / "calls.log").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for c in lines if c.startswith("mirror pool status"))


def test_a_hung_site_never_slows_the_other(
    tmp_path: Path, clusters: dict[str, Any], caplog: Any
) -> None:
    """dr1's `rbd` hangs (a lost site's monitors): each of its probes fails at the timeout,
    overlapping turns are counted, not logged each time, and dr2 keeps its cadence."""
    from auditd.daemon.runner import Daemon

    cfg, sites = _daemon_config(
        tmp_path, clusters, {"interval": "1s", "timeout": "3s", "max_concurrent": 1}
    )
    sites["dr1"].scenario("timeout")
    daemon = Daemon(cfg)
    daemon.start()
    try:
        wait_until(lambda: _status_calls(sites["dr2"]) >= 1, timeout=15)
        before, t0 = _status_calls(sites["dr2"]), daemon.clock.now()
        wait_until(lambda: (daemon.clock.now() - t0).total_seconds() >= 7, timeout=15)
        survivor = _status_calls(sites["dr2"]) - before
        overlaps = daemon.metrics.probe_overlaps.labels("dr1", "replicapool")._value.get()
        failing = daemon.ingestor.inventory.objects
    finally:
        daemon.stop()
    # Every second on the survivor, whatever the lost site does (one thread each here).
    assert survivor >= 5, survivor
    assert overlaps >= 2, overlaps
    pool = next(k for k in failing if k.cluster == "dr1" and k.kind == "RbdPool")
    assert failing[pool].facts.get("probe_error") == "timeout"
    noise = [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    assert noise == []


def test_a_new_pvc_brings_a_probe_of_both_sites_at_once(
    tmp_path: Path, clusters: dict[str, Any]
) -> None:
    """Evidence at least as fresh as the object: a PVC appearing asks for both sites' status
    now, not at the next interval (an hour here), and at most once per on_demand_gap."""
    from auditd.daemon.runner import Daemon
    from auditd.sim import objects
    from auditd.sources.kube.kinds import PVC

    cfg, sites = _daemon_config(tmp_path, clusters, {"interval": "1h", "on_demand_gap": "1s"})
    daemon = Daemon(cfg)
    daemon.start()
    try:
        wait_until(lambda: all(_status_calls(s) == 1 for s in sites.values()), timeout=15)
        assert daemon.wait_synced()
        clusters["dr2"].create(PVC, objects.pvc("data", "app", phase="Pending"))
        wait_until(lambda: all(_status_calls(s) == 2 for s in sites.values()), timeout=15)
        asked = daemon.metrics.probes_on_demand.labels("dr1", "replicapool")._value.get()
    finally:
        daemon.stop()
    assert asked >= 1
