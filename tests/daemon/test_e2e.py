"""End to end: `auditd run` as a subprocess against two fake clusters and a fake Slack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TOKEN

from auditd.sim import objects
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PVC


def write_config(
    path: Path,
    clusters: dict[str, Any],
    slack: FakeSlack,
    db_url: str,
    contexts: tuple[str, str] = ("dr1", "dr2"),
) -> Path:
    path.write_text(
        pair_config_toml(
            clusters["kubeconfig"],
            db_url,
            data_dir=path.parent / "data",
            contexts=contexts,
            slack_base_url=slack.base_url,
        )
    )
    return path


class Daemon:
    def __init__(self, config: Path, *args: str) -> None:
        env = {**os.environ, "AUDITD_SLACK_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "auditd", "run", "-c", str(config), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{err}") from None
        return self.proc.returncode, err


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(token=TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def daemon_factory() -> Iterator[Any]:
    started: list[Daemon] = []

    def start(config: Path, *args: str) -> Daemon:
        d = Daemon(config, *args)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.communicate()


def report(config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "auditd",
            "report",
            "-c",
            str(config),
            "--since",
            "1h",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_pvc_on_secondary_alerts_resolves_and_reports(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack, db_url: str, daemon_factory: Any
) -> None:
    config = write_config(tmp_path / "auditd.toml", clusters, slack, db_url)
    dr1, dr2 = clusters["dr1"], clusters["dr2"]
    dr1.create(PVC, objects.pvc("mysql-data", "shop", volume="pvc-1"))
    daemon = daemon_factory(config)
    dr1.wait_watchers(1, PVC.plural, timeout=30)
    dr2.wait_watchers(1, PVC.plural, timeout=30)

    dr2.create(PVC, objects.pvc("mysql-data", "shop", phase="Pending"))
    fired = slack.wait_for(1, timeout=15)[0]
    assert fired["text"].startswith("FIRING [warning] pvc-on-secondary")
    assert "shop/mysql-data" in fired["text"] and "dr2" in fired["text"]

    dr2.delete(PVC, "shop", "mysql-data")
    resolved = slack.wait_for(2, timeout=15)[1]
    assert resolved["text"].startswith("RESOLVED [warning] pvc-on-secondary")
    # The resolve is a reply in the incident's thread, and the parent now shows it resolved.
    assert resolved["thread_ts"] == fired["ts"]
    deadline = time.monotonic() + 5
    while not slack.messages[0].get("edited") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slack.messages[0]["edited"] and slack.messages[0]["text"].startswith("RESOLVED")

    rc, stderr = daemon.stop()
    assert rc == 0, stderr
    assert TOKEN not in stderr

    doc = report(config)
    dr2_exists = [
        (t["old"], t["new"], t["source"])
        for t in doc["transitions"]
        if t["cluster"] == "dr2" and t["kind"] == "PersistentVolumeClaim" and t["field"] == "exists"
    ]
    assert dr2_exists == [("false", "true", "watch"), ("true", "false", "watch")]
    assert any(t["cluster"] == "dr1" and t["source"] == "list" for t in doc["transitions"])
    [v] = doc["violations"]
    assert (v["rule"], v["subject"], v["state"]) == (
        "pvc-on-secondary",
        "dr2/PersistentVolumeClaim/shop/mysql-data",
        "resolved",
    )
    assert v["fired_at"] and v["resolved_at"]
    # Each alert shows the status of the incident message that told it.
    assert v["notifications"] == ["firing:slack:sent", "resolved:slack:sent"]
    assert len(slack.messages) == 2


def test_restart_neither_refires_nor_forgets(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack, daemon_factory: Any
) -> None:
    config = write_config(
        tmp_path / "auditd.toml", clusters, slack, f"sqlite:///{tmp_path / 'h.db'}"
    )
    dr2 = clusters["dr2"]
    daemon = daemon_factory(config)
    dr2.wait_watchers(1, PVC.plural, timeout=30)
    dr2.create(PVC, objects.pvc("stray", "ns"))
    slack.wait_for(1, timeout=15)
    assert daemon.stop()[0] == 0

    # While auditd is down the PVC changes; the restart finds it (resync, late) and does not re-fire.
    dr2.wait_no_watchers(PVC.plural)
    dr2.patch(PVC, "ns", "stray", {"status": {"phase": "Lost"}})
    daemon = daemon_factory(config)
    dr2.wait_watchers(1, PVC.plural, timeout=30)
    time.sleep(1.0)
    assert len(slack.messages) == 1
    dr2.delete(PVC, "ns", "stray")
    assert slack.wait_for(2, timeout=15)[1]["text"].startswith("RESOLVED")
    assert daemon.stop()[0] == 0

    doc = report(config)
    resync = [
        (t["field"], t["new"], t["late"]) for t in doc["transitions"] if t["source"] == "resync"
    ]
    assert resync == [("phase", "Lost", True)]
    assert [v["state"] for v in doc["violations"]] == ["resolved"]


def test_unreachable_cluster_is_logged_and_the_other_keeps_working(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack, daemon_factory: Any
) -> None:
    # dr1 points at a context that does not exist; dr2 is fine.
    config = write_config(
        tmp_path / "auditd.toml",
        clusters,
        slack,
        f"sqlite:///{tmp_path / 'h.db'}",
        ("missing", "dr2"),
    )
    daemon = daemon_factory(config)
    clusters["dr2"].wait_watchers(1, PVC.plural, timeout=30)
    clusters["dr2"].create(PVC, objects.pvc("stray", "ns"))
    slack.wait_for(1, timeout=15)
    rc, stderr = daemon.stop()
    assert rc == 0
    assert "cluster unavailable" in stderr and "missing" in stderr and "cluster=dr1" in stderr


def test_unreachable_slack_keeps_the_notification_for_later(
    tmp_path: Path, clusters: dict[str, Any], daemon_factory: Any
) -> None:
    down = FakeSlack(token=TOKEN).start()
    config = write_config(
        tmp_path / "auditd.toml", clusters, down, f"sqlite:///{tmp_path / 'h.db'}"
    )
    down.stop()  # Slack is unreachable for the whole run
    daemon = daemon_factory(config)
    clusters["dr2"].wait_watchers(1, PVC.plural, timeout=30)
    clusters["dr2"].create(PVC, objects.pvc("stray", "ns"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        doc = report(config)
        if doc["violations"]:
            break
        time.sleep(0.3)
    rc, stderr = daemon.stop()
    assert rc == 0
    assert "slack unreachable" in stderr
    [v] = report(config)["violations"]
    assert v["state"] == "firing" and v["notifications"] == ["firing:slack:pending"]


def test_kill_9_after_slack_accepted_does_not_post_twice(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack, daemon_factory: Any
) -> None:
    from sqlalchemy import select

    from auditd.store.db import make_engine, session_factory
    from auditd.store.models import NotificationRow

    db = f"sqlite:///{tmp_path / 'h.db'}"
    config = write_config(tmp_path / "auditd.toml", clusters, slack, db)
    config.write_text(config.read_text().replace("[slack]\n", '[slack]\ntimeout = "60s"\n'))
    # Slack stores the first message, then answers only after 60 s: we kill auditd meanwhile.
    slack.fail_next(1, method="chat.postMessage", after_accept=60)
    daemon = daemon_factory(config)
    clusters["dr2"].wait_watchers(1, PVC.plural, timeout=30)
    clusters["dr2"].create(PVC, objects.pvc("stray", "ns"))
    first = slack.wait_for(1, timeout=15)[0]
    daemon.proc.kill()  # kill -9: no flush, no goodbye
    daemon.proc.communicate()
    engine = make_engine(db)
    with session_factory(engine)() as s:
        rows = s.scalars(select(NotificationRow).order_by(NotificationRow.id)).all()
        # The alert, folded into its incident, and the incident's message, mid-delivery.
        assert [(n.violation_id is None, n.status) for n in rows] == [
            (False, "grouped"),
            (True, "sending"),
        ]

    daemon = daemon_factory(config)  # the restart finds the row mid-delivery and asks Slack
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with session_factory(engine)() as s:
            row = s.scalars(
                select(NotificationRow).where(NotificationRow.violation_id.is_(None))
            ).one()
        if row.status == "sent":
            break
        time.sleep(0.2)
    assert row.status == "sent" and row.external_id == first["ts"]
    assert row.attempts == 1  # the interrupted attempt reached Slack: it counts
    assert len(slack.messages) == 1  # not posted twice
    clusters["dr2"].delete(PVC, "ns", "stray")
    assert slack.wait_for(2, timeout=15)[1]["text"].startswith("RESOLVED")
    assert daemon.stop()[0] == 0
    engine.dispose()


def test_json_logs_by_option_one_object_per_line_no_secrets(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack, daemon_factory: Any
) -> None:
    config = write_config(
        tmp_path / "auditd.toml", clusters, slack, f"sqlite:///{tmp_path / 'h.db'}"
    )
    daemon = daemon_factory(config, "--log-format", "json", "--log-level", "INFO")
    clusters["dr2"].wait_watchers(1, PVC.plural, timeout=30)
    clusters["dr2"].create(PVC, objects.pvc("stray", "ns"))
    slack.wait_for(1, timeout=15)
    rc, stderr = daemon.stop()
    assert rc == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(doc) for doc in lines)
    assert any("pvc-on-secondary" in doc["msg"] for doc in lines)
    assert TOKEN not in stderr
