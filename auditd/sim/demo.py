"""`auditd demo`: the daemon on SQLite against two simulated clusters, then the hour before
replayed on a simulated clock (sim/story.py), then the report."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import tomllib
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.build import build_sinks
from auditd.clock import SYSTEM
from auditd.config import SlackConfig, parse_config
from auditd.daemon.runner import Daemon
from auditd.report.query import load_report
from auditd.report.render import to_table
from auditd.sim import objects
from auditd.sim.fakekube import DEFAULT_RESOURCES, FakeKubeAPI, write_kubeconfig
from auditd.sim.story import LENGTH, POOL, replay
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import DRPC, PV, PVC, VGR, VR, VRG, kinds_for
from auditd.store.db import make_engine, session_factory
from auditd.store.models import AlertGroupRow, NotificationRow, ViolationRow

log = logging.getLogger(__name__)


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _wait_delivered(daemon: Daemon, event: str, timeout: float = 20.0) -> bool:
    """Until alerts of this event kind exist and the outbox has nothing left to do for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with daemon.sessions() as s:
            rows = s.scalars(select(NotificationRow)).all()
            unflushed = s.scalar(
                select(AlertGroupRow.id).where(AlertGroupRow.last_flush_at.is_(None)).limit(1)
            )
            alerts = [r for r in rows if r.violation_id is not None and r.event == event]
            if (
                alerts
                and unflushed is None
                and all(r.status not in ("pending", "sending") for r in rows)
            ):
                return True
            if not rows and event == "firing":
                fired = s.scalars(
                    select(ViolationRow).where(ViolationRow.fired_at.is_not(None))
                ).first()
                if fired is not None and not daemon.dispatcher.sinks:
                    return True
        time.sleep(0.1)
    return False


def run_demo(
    data_dir: Path | None = None, slack: bool = False, slack_base_url: str | None = None
) -> int:
    """``slack_base_url``: another Slack API (the tests' fake one)."""
    started = SYSTEM.now() - timedelta(seconds=1)
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="auditd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dr_kinds = (*DEFAULT_RESOURCES, VGR, VRG)
    dr1 = FakeKubeAPI("dr1", dr_kinds, bookmark_interval=5).start()
    dr2 = FakeKubeAPI("dr2", dr_kinds, bookmark_interval=5).start()
    hub = FakeKubeAPI("hub", kinds_for("hub"), bookmark_interval=5).start()
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(str(kubeconfig), {"dr1": dr1.url, "dr2": dr2.url, "hub": hub.url})
    toml = pair_config_toml(
        kubeconfig,
        f"sqlite:///{(workdir / 'auditd.db').resolve()}",
        hub_context="hub",
        data_dir=workdir,
        sections={"alerts": {"console": True}},
        pools=(POOL,),
    )
    (workdir / "auditd.toml").write_text(toml)  # so that `auditd explain -c` can use it later
    config = parse_config(tomllib.loads(toml))
    if slack:
        # The config default reads $AUDITD_SLACK_TOKEN / $AUDITD_SLACK_CHANNEL (or a webhook).
        extra = {"base_url": slack_base_url} if slack_base_url else {}
        config = config.model_copy(update={"slack": SlackConfig(**extra)})
        if config.slack.token() is None and config.slack.webhook() is None:
            print(
                "auditd demo --slack: set AUDITD_SLACK_TOKEN and AUDITD_SLACK_CHANNEL "
                "(or AUDITD_SLACK_WEBHOOK) first",
                file=sys.stderr,
            )
            return 2
    daemon = Daemon(config)
    try:
        _say(
            "Live: three simulated Kubernetes API servers on 127.0.0.1 (dr1, dr2 and Ramen's "
            "hub), auditd watching all three"
        )
        _application(dr1, hub)
        daemon.start()
        if not daemon.wait_synced(20):
            print("the simulated clusters did not sync in time", file=sys.stderr)
            return 1
        print(
            "    the application shop (Ramen DRPC on the hub, deployed on dr1): mysql-data with "
            "its VolumeReplication,\n    mysql-logs and uploads in a consistency group; on dr1 "
            "only: no violation"
        )

        _say("Live: someone applies the PVC shop/mysql-data on dr2, the DR secondary")
        dr2.create(PVC, objects.pvc("mysql-data", "shop", phase="Pending"))
        if not _wait_delivered(daemon, "firing"):
            print("no alert was delivered in time", file=sys.stderr)
            return 1

        _say("Live: the stray PVC is deleted from dr2")
        time.sleep(1.0)
        dr2.delete(PVC, "shop", "mysql-data")
        if not _wait_delivered(daemon, "resolved"):
            print("no resolve was delivered in time", file=sys.stderr)
            return 1
    finally:
        daemon.stop()
        for cluster in (dr1, dr2, hub):
            cluster.stop()

    # The hour before, replayed through the same pipeline on a simulated clock.
    story_start = started - LENGTH - timedelta(minutes=2)
    _say(
        "The hour before, replayed on a simulated clock through the same pipeline "
        "(real Ceph captures for the RBD mirror status)"
    )
    engine = make_engine(config.effective_database_url())
    sessions = session_factory(engine)
    sinks = build_sinks(config, console=True)
    replay(sessions, config, story_start, Dispatcher(sessions, sinks, config.alerts), _act)

    _say("auditd report")
    with sessions() as s:
        print(to_table(load_report(s, story_start - timedelta(minutes=1), SYSTEM.now())))
    engine.dispose()
    print(f"History kept in {workdir}; read it again with:")
    print(
        f"    auditd report -c {workdir / 'auditd.toml'} --since 2h -o html --output-file report.html"
    )
    print(f"    auditd history -c {workdir / 'auditd.toml'} payments/ledger")
    print(f"    auditd explain -c {workdir / 'auditd.toml'} shop/mysql-data")
    print(f"    auditd explain -c {workdir / 'auditd.toml'} drpc/shop/shop")
    return 0


def _application(dr1: FakeKubeAPI, hub: FakeKubeAPI) -> None:
    """Ramen's application shop, primary on dr1: a DRPC on the hub, a VRG on dr1, and three
    volumes (one with its own VolumeReplication, two replicated as a consistency group)."""
    dr1.create(PVC, objects.pvc("mysql-data", "shop", volume="pvc-4f1c"))
    dr1.create(PV, objects.pv("pvc-4f1c", "shop", "mysql-data", "csi-vol-4f1c"))
    dr1.create(VR, objects.vr("mysql-data", "shop", "mysql-data"))
    members = [("mysql-logs", "pvc-77a0", "csi-vol-77a0"), ("uploads", "pvc-9b3e", "csi-vol-9b3e")]
    for claim, volume, image in members:
        dr1.create(PVC, objects.pvc(claim, "shop", volume=volume))
        dr1.create(PV, objects.pv(volume, "shop", claim, image))
    dr1.create(VGR, objects.vgr("shop-group", "shop", [claim for claim, _, _ in members]))
    claims = ["mysql-data", *(claim for claim, _, _ in members)]
    dr1.create(VRG, objects.vrg("shop", "shop", protected=claims))
    hub.create(DRPC, objects.drpc("shop", "shop", "dr1"))


def _act(title: str) -> None:
    print(f"    {title}", flush=True)
