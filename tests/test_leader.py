"""One writer, enforced (issue 14, item 1).

SQLite: a second `auditd run` on the same file refuses to start. PostgreSQL: two `auditd run`
processes on one history elect a leader; only it writes and posts; kill -9 it while violations
are changing, and the standby takes over with nothing lost and nothing posted twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from sqlalchemy import func, select
from test_e2e import TOKEN
from test_ops import get as _get
from test_ops import value as _value

from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PVC
from auditd.store.db import make_engine, session_factory
from auditd.store.models import NotificationRow, TransitionRow, ViolationRow


def get(port: int, path: str) -> tuple[int, str]:
    """The daemon's ops endpoint, or (0, "") while it is not listening yet (or any more)."""
    try:
        return _get(port, path)
    except OSError:
        return 0, ""


def value(port: int, name: str) -> float | None:
    try:
        return _value(port, name)
    except OSError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "auditd", "run", "-c", str(config)],
            env={**os.environ, "AUDITD_SLACK_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def _config(
    tmp: Path, name: str, clusters: dict[str, Any], slack: FakeSlack, url: str
) -> tuple[Path, int]:
    port = _free_port()
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        pair_config_toml(
            clusters["kubeconfig"],
            url,
            data_dir=tmp / name,
            slack_base_url=slack.base_url,
            sections={
                "ops": {"listen": f"127.0.0.1:{port}"},
                # One incident per violation: every alert is one top-level Slack message.
                "alerts": {"group_by": ["subject"], "group_wait": "0s", "group_interval": "0s"},
            },
        )
    )
    return cfg, port


def test_a_second_writer_on_one_sqlite_history_refuses_to_start(
    tmp_path: Path, clusters: dict[str, Any], slack: FakeSlack
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    cfg, port = _config(tmp_path, "a", clusters, slack, url)
    first = Proc(cfg)
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, 30)
        second = subprocess.run(
            [sys.executable, "-m", "auditd", "run", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "AUDITD_SLACK_TOKEN": TOKEN},
        )
        assert second.returncode == 1
        assert "another auditd run (pid" in second.stderr and "Traceback" not in second.stderr
        assert first.proc.poll() is None
    finally:
        first.stop()


@pytest.mark.postgres
def test_kill_9_the_leader_the_standby_takes_over_nothing_lost_nothing_twice(
    tmp_path: Path, clusters: dict[str, Any], pg_url: str
) -> None:
    slack = FakeSlack(token=TOKEN).start()
    dr2: FakeKubeAPI = clusters["dr2"]
    cfg_a, port_a = _config(tmp_path, "a", clusters, slack, pg_url)
    cfg_b, port_b = _config(tmp_path, "b", clusters, slack, pg_url)
    a = Proc(cfg_a)
    b: Proc | None = None
    created: list[str] = []
    try:
        wait_until(lambda: value(port_a, "auditd_leader") == 1, 30)
        b = Proc(cfg_b)
        wait_until(lambda: get(port_b, "/readyz")[0] == 200, 30)
        assert value(port_b, "auditd_leader") == 0
        assert "standby" in get(port_b, "/readyz")[1]

        def stray(i: int) -> None:
            name = f"stray-{i}"
            dr2.create(PVC, objects.pvc(name, "shop"))
            created.append(name)

        # Violations changing: PVCs on the secondary appear (firing) and go (resolved).
        for i in range(6):
            stray(i)
            time.sleep(0.3)
        for i in range(0, 6, 2):
            dr2.delete(PVC, "shop", f"stray-{i}")
        time.sleep(0.5)  # some delivered, some maybe in flight
        a.proc.kill()  # kill -9: no goodbye, the lock goes with its session
        killed = time.monotonic()
        for i in range(6, 10):  # while nobody leads
            stray(i)
        wait_until(lambda: value(port_b, "auditd_leader") == 1, 30)
        takeover = time.monotonic() - killed
        status = subprocess.run(
            [sys.executable, "-m", "auditd", "status", "--db", pg_url, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        leader = json.loads(status.stdout)["leader"]
        assert leader["holder"].endswith(f"/{b.proc.pid}") and leader["current"], leader
        for i in range(10, 13):  # under the new leader
            stray(i)
        dr2.delete(PVC, "shop", "stray-7")
        deleted = {f"stray-{i}" for i in (0, 2, 4, 7)}
        firing = {f"dr2/PersistentVolumeClaim/shop/{n}" for n in set(created) - deleted}

        engine = make_engine(pg_url)
        sessions = session_factory(engine)

        def settled() -> bool:
            with sessions() as s:
                open_ = set(
                    s.scalars(
                        select(ViolationRow.subject).where(
                            ViolationRow.rule == "pvc-on-secondary",
                            ViolationRow.state == "firing",
                        )
                    )
                )
                waiting = s.scalar(
                    select(func.count())
                    .select_from(NotificationRow)
                    .where(NotificationRow.status.in_(["pending", "sending"]))
                )
            seen[:] = [sorted(open_ ^ firing), waiting]
            return open_ == firing and waiting == 0

        seen: list[Any] = []
        try:
            wait_until(settled, 60)
        except AssertionError:
            raise AssertionError(f"not settled: {seen}\n{b.stop()[-4000:]}") from None
        with sessions() as s:
            exists = Counter(
                (t.name, t.new)
                for t in s.scalars(
                    select(TransitionRow).where(
                        TransitionRow.kind == PVC.kind,
                        TransitionRow.cluster == "dr2",
                        TransitionRow.field == "exists",
                    )
                )
            )
            violations = list(
                s.scalars(select(ViolationRow).where(ViolationRow.rule == "pvc-on-secondary"))
            )
        engine.dispose()
    finally:
        err_a = a.stop()
        err_b = b.stop() if b else ""
        slack.stop()
    # Zero lost, zero duplicated transitions: every creation once, every deletion once.
    assert {n for (n, new) in exists if new == "true"} == set(created)
    assert all(c == 1 for c in exists.values()), exists
    assert {n for (n, new) in exists if new == "false"} == deleted
    # Zero lost, zero duplicated Slack messages: one top-level FIRING per violation that fired.
    top = Counter(
        match.group(1)
        for m in slack.messages
        if m["thread_ts"] is None and (match := re.search(r"shop/(stray-\d+)", m["text"] or ""))
    )
    fired = {v.subject.rsplit("/", 1)[1] for v in violations if v.fired_at is not None}
    assert set(top) == fired and all(n == 1 for n in top.values()), (top, fired)
    keys = Counter(
        m["metadata"]["event_payload"].get("key") for m in slack.messages if m.get("metadata")
    )
    assert all(n == 1 for n in keys.values()), keys
    assert takeover < 15, takeover
    print(f"takeover after kill -9: {takeover:.1f}s; {len(slack.messages)} Slack messages")
    with contextlib.suppress(Exception):
        print(err_b[-3000:])
    del err_a


@pytest.mark.postgres
def test_a_deposed_leader_that_still_runs_neither_writes_nor_posts(
    tmp_path: Path, clusters: dict[str, Any], pg_url: str
) -> None:
    """The leader's database session is cut (as by a network partition) while the process
    lives on: it steps down, the other replica leads, and the deposed one stays quiet."""
    import psycopg

    slack = FakeSlack(token=TOKEN).start()
    dr2: FakeKubeAPI = clusters["dr2"]
    cfg_a, port_a = _config(tmp_path, "a", clusters, slack, pg_url)
    cfg_b, port_b = _config(tmp_path, "b", clusters, slack, pg_url)
    a, b = Proc(cfg_a), None
    try:
        wait_until(lambda: value(port_a, "auditd_leader") == 1, 30)
        b = Proc(cfg_b)
        wait_until(lambda: value(port_b, "auditd_leader") == 0, 30)
        plain = pg_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = %s AND objid = 1 AND granted",
                (0x61756469,),
            )
        wait_until(lambda: value(port_b, "auditd_leader") == 1, 20)
        wait_until(lambda: value(port_a, "auditd_leader") == 0, 20)
        dr2.create(PVC, objects.pvc("after-the-cut", "shop"))
        wait_until(lambda: any("after-the-cut" in (m["text"] or "") for m in slack.messages), 30)
        time.sleep(3)  # time for a deposed writer to (wrongly) post it again
        posts = [m for m in slack.messages if "after-the-cut" in (m["text"] or "")]
        assert len(posts) == 1, posts
        assert a.proc.poll() is None  # it lives on, as a standby
        assert value(port_a, "auditd_leader") == 0
    finally:
        a.stop()
        if b is not None:
            b.stop()
        slack.stop()
