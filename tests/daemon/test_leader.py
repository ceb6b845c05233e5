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
from helpers import TOKEN, wait_until
from ops_client import get as _get
from ops_client import samples
from ops_client import value as _value
from sqlalchemy import func, select

from auditd.daemon.leader import LEAD_NS, lock_key
from auditd.daemon.lease import lease_name
from auditd.daemon.scopes import GLOBAL
from auditd.sim import objects
from auditd.sim.fakekube import LEASE, FakeKubeAPI, write_kubeconfig
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import free_port, pair_config_toml
from auditd.sources.kube.kinds import PVC
from auditd.store.db import make_engine, session_factory
from auditd.store.models import NotificationRow, TransitionRow, ViolationRow


def get(port: int, path: str) -> tuple[int, str]:
    """The daemon's ops endpoint, or (0, "") while it is not listening yet (or any more)."""
    try:
        return _get(port, path)
    except OSError:
        return 0, ""


def value(port: int, name: str, **labels: str) -> float | None:
    try:
        return _value(port, name, **labels)
    except OSError:
        return None


PAIR = "pair/dr1-dr2"


def leads(port: int, scope: str = PAIR) -> float | None:
    return value(port, "auditd_leader", scope=scope)


def status(url: str, format: str) -> str:  # noqa: A002 - the CLI's own option name
    """`auditd status` of the history, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "auditd", "status", "--db", url, "--format", format],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


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
    tmp: Path, name: str, clusters: dict[str, Any], slack: FakeSlack, url: str, extra: str = ""
) -> tuple[Path, int]:
    port = free_port()
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
        + extra
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
        wait_until(lambda: leads(port_a) == 1, 30)
        b = Proc(cfg_b)
        wait_until(lambda: get(port_b, "/readyz")[0] == 200, 30)
        assert leads(port_b) == 0
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
        wait_until(lambda: leads(port_b) == 1, 30)
        takeover = time.monotonic() - killed
        leaders = {ld["scope"]: ld for ld in json.loads(status(pg_url, "json"))["leaders"]}
        for scope in (PAIR, "auditd"):
            leader = leaders[scope]
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
        wait_until(lambda: leads(port_a) == 1, 30)
        b = Proc(cfg_b)
        wait_until(lambda: leads(port_b) == 0, 30)
        plain = pg_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
        # This history's leaders only: the locks are the server's, and a leader of another
        # test's history (another schema, another xdist worker) cut here fails that test.
        engine = make_engine(pg_url)
        with engine.connect() as c:
            realm = str(c.exec_driver_sql("SELECT current_schema()").scalar())
        engine.dispose()
        keys = [lock_key(realm, scope) for scope in (PAIR, GLOBAL)]
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = %s AND objid::bigint = ANY(%s) AND granted"
                " AND pid <> pg_backend_pid()",
                (LEAD_NS, keys),
            )
        wait_until(lambda: leads(port_b) == 1, 20)
        wait_until(lambda: leads(port_a) == 0, 20)
        dr2.create(PVC, objects.pvc("after-the-cut", "shop"))
        wait_until(lambda: any("after-the-cut" in (m["text"] or "") for m in slack.messages), 30)
        time.sleep(3)  # time for a deposed writer to (wrongly) post it again
        posts = [m for m in slack.messages if "after-the-cut" in (m["text"] or "")]
        assert len(posts) == 1, posts
        assert a.proc.poll() is None  # it lives on, as a standby
        assert leads(port_a) == 0
    finally:
        a.stop()
        if b is not None:
            b.stop()
        slack.stop()


P1, P2 = "pair/dr1-dr2", "pair/dr3-dr4"


def _second_pair(kubeconfig: Path) -> str:
    """dr3/dr4: a second pair, watching the same two fake API servers as dr1/dr2 (contexts
    dr1, dr2), so that one stray PVC on the shared secondary is one violation in each pair."""
    return f"""
[[clusters]]
name = "dr3"
kubeconfig = "{kubeconfig}"
context = "dr1"
role = "primary"

[[clusters]]
name = "dr4"
kubeconfig = "{kubeconfig}"
context = "dr2"
role = "secondary"

[[pairs]]
name = "dr3-dr4"
clusters = ["dr3", "dr4"]
"""


LEASES = """
[ha]
election = "lease"
kubeconfig = "{kubeconfig}"
context = "dr1"
lease_namespace = "auditd"
lease_duration = "{duration}"
"""


@pytest.mark.postgres
@pytest.mark.parametrize("election", ["postgres", "lease"])
def test_two_replicas_spread_two_pairs_and_one_leads_both_when_the_other_dies(
    tmp_path: Path, clusters: dict[str, Any], pg_url: str, election: str
) -> None:
    """Each replica leads one pair; kill -9 one, the other leads both. With Leases (in the
    fake API server of the cluster auditd "runs" in), the Leases name the same holders, and
    the dead replica's Lease is taken at once (its database session is gone: it is dead), not
    after it expires (60 s here, 15 s by default)."""
    slack = FakeSlack(token=TOKEN).start()
    dr1: FakeKubeAPI = clusters["dr1"]
    dr2: FakeKubeAPI = clusters["dr2"]
    extra = _second_pair(clusters["kubeconfig"])
    if election == "lease":
        dr1.add_resource(LEASE)
        # Far longer than the takeover may take: a takeover that waited for the dead
        # replica's Lease to expire would miss the 15 s target below by far.
        extra += LEASES.format(kubeconfig=clusters["kubeconfig"], duration="60s")

    def lease_holder(scope: str) -> str | None:
        lease = dr1.get(LEASE, "auditd", lease_name(scope))
        return lease["spec"].get("holderIdentity") if lease else None

    cfg_a, port_a = _config(tmp_path, "a", clusters, slack, pg_url, extra)
    cfg_b, port_b = _config(tmp_path, "b", clusters, slack, pg_url, extra)
    a = Proc(cfg_a)
    b: Proc | None = None
    engine = make_engine(pg_url)
    sessions = session_factory(engine)

    def firing() -> set[str]:
        with sessions() as s:
            return set(
                s.scalars(
                    select(ViolationRow.subject).where(
                        ViolationRow.rule == "pvc-on-secondary", ViolationRow.state == "firing"
                    )
                )
            )

    def posted(name: str) -> list[dict[str, Any]]:
        return [m for m in slack.messages if m["thread_ts"] is None and name in (m["text"] or "")]

    def fired(port: int) -> float:
        return sum(
            v
            for (name, labels), v in samples(port).items()
            if name == "auditd_rule_firings_total" and ("rule", "pvc-on-secondary") in labels
        )

    try:
        wait_until(lambda: leads(port_a, P1) == 1 and leads(port_a, P2) == 1, 30)
        b = Proc(cfg_b)
        started = time.monotonic()
        # B joins once its watches have listed; A hands it one pair.
        wait_until(
            lambda: (
                {leads(port_a, P1), leads(port_a, P2)} == {0.0, 1.0}
                and leads(port_b, P1) == 1 - (leads(port_a, P1) or 0)
                and leads(port_b, P2) == 1 - (leads(port_a, P2) or 0)
            ),
            30,
        )
        spread = time.monotonic() - started
        a_pair = P1 if leads(port_a, P1) == 1 else P2
        b_pair = P2 if a_pair == P1 else P1
        ready = get(port_b, "/readyz")[1]
        assert f"leads {b_pair}" in ready and f"follows {a_pair}" in ready, ready
        if election == "lease":
            wait_until(lambda: lease_holder(a_pair) == f"{socket.gethostname()}/{a.proc.pid}", 10)
            assert lease_holder(b_pair) == f"{socket.gethostname()}/{b.proc.pid}"

        # Each replica writes, evaluates and fires its own pair's violation.
        dr2.create(PVC, objects.pvc("stray-1", "shop"))
        both = {"dr2/PersistentVolumeClaim/shop/stray-1", "dr4/PersistentVolumeClaim/shop/stray-1"}
        wait_until(lambda: firing() == both, 30)
        wait_until(lambda: len(posted("stray-1")) == 2, 30)
        assert (fired(port_a), fired(port_b)) == (1, 1), "each fired its own pair's violation"

        b.proc.kill()  # kill -9
        killed = time.monotonic()
        dr2.create(PVC, objects.pvc("stray-2", "shop"))  # while B's pair has no leader
        wait_until(lambda: leads(port_a, P1) == 1 and leads(port_a, P2) == 1, 30)
        takeover = time.monotonic() - killed
        leaders = {ld["scope"]: ld for ld in json.loads(status(pg_url, "json"))["leaders"]}
        assert set(leaders) == {P1, P2, "auditd"}
        table = status(pg_url, "table")
        rows = [line.split()[0] for line in table.splitlines() if f"/{a.proc.pid} " in line]
        assert sorted(rows) == ["auditd", P1, P2] and "NOT RENEWED" not in table, table
        assert all(ld["holder"].endswith(f"/{a.proc.pid}") for ld in leaders.values()), leaders
        if election == "lease":
            assert {lease_holder(s) for s in (P1, P2, "auditd")} == {
                f"{socket.gethostname()}/{a.proc.pid}"
            }
        dr2.create(PVC, objects.pvc("stray-3", "shop"))  # under the one leader of both
        everything = {
            f"{c}/PersistentVolumeClaim/shop/stray-{i}" for c in ("dr2", "dr4") for i in (1, 2, 3)
        }
        wait_until(lambda: firing() == everything, 30)
        wait_until(lambda: all(len(posted(f"stray-{i}")) == 2 for i in (2, 3)), 30)
        time.sleep(2)  # time for a duplicate to show
        with sessions() as s:
            exists = Counter(
                (t.cluster, t.name)
                for t in s.scalars(
                    select(TransitionRow).where(
                        TransitionRow.kind == PVC.kind, TransitionRow.field == "exists"
                    )
                )
                if t.name.startswith("stray-")
            )
    finally:
        engine.dispose()
        a.stop()
        if b is not None:
            b.stop()
        slack.stop()
    # Every stray PVC recorded once on each pair's secondary; every violation posted once.
    assert exists == Counter({(c, f"stray-{i}"): 1 for c in ("dr2", "dr4") for i in (1, 2, 3)})
    for i in (1, 2, 3):
        subjects = Counter(
            next(iter(re.findall(r"\bdr[24]\b", m["text"] or "")), None)
            for m in posted(f"stray-{i}")
        )
        assert subjects == Counter({"dr2": 1, "dr4": 1}), (i, subjects)
    assert takeover < 15, takeover
    print(
        f"{election}: spread in {spread:.1f}s (A leads {a_pair});"
        f" after kill -9 A leads both in {takeover:.1f}s"
    )


@pytest.mark.postgres
def test_with_leases_a_taken_lease_deposes_and_a_silent_api_server_deposes_nobody(
    tmp_path: Path, clusters: dict[str, Any], pg_url: str
) -> None:
    """The Lease says who should lead, the advisory lock fences. Leases live in the API server
    of the cluster auditd runs in ("home"): when it does not answer, the leader stays (the
    lock alone is safe) and alerts still go out once; when another replica holds the Lease,
    the leader gives the pair up and that replica leads."""
    home = FakeKubeAPI("home", resources=[LEASE]).start()
    port = int(home.url.rsplit(":", 1)[1])
    home_config = tmp_path / "home-kubeconfig"
    write_kubeconfig(str(home_config), {"home": home.url})
    extra = LEASES.format(kubeconfig=home_config, duration="8s").replace(
        'context = "dr1"', 'context = "home"'
    )
    slack = FakeSlack(token=TOKEN).start()
    dr2: FakeKubeAPI = clusters["dr2"]
    cfg_a, port_a = _config(tmp_path, "a", clusters, slack, pg_url, extra)
    cfg_b, port_b = _config(tmp_path, "b", clusters, slack, pg_url, extra)
    a, b = Proc(cfg_a), None
    name = lease_name(PAIR)

    def posted(text: str) -> int:
        return sum(
            1 for m in slack.messages if m["thread_ts"] is None and text in (m["text"] or "")
        )

    def lease_holder() -> str | None:
        lease = home.get(LEASE, "auditd", name)
        return lease["spec"].get("holderIdentity") if lease else None

    try:
        wait_until(lambda: leads(port_a) == 1, 30)
        pid_a = f"{socket.gethostname()}/{a.proc.pid}"
        wait_until(lambda: lease_holder() == pid_a, 10)
        b = Proc(cfg_b)
        wait_until(lambda: get(port_b, "/readyz")[0] == 200, 30)
        assert leads(port_b) == 0

        home.stop()
        time.sleep(9)  # longer than the Leases' 8 s
        assert (leads(port_a), leads(port_b)) == (1, 0)
        dr2.create(PVC, objects.pvc("during-the-outage", "shop"))
        wait_until(lambda: posted("during-the-outage") == 1, 30)

        home = FakeKubeAPI("home", resources=[LEASE]).start(port)  # back, its Leases lost
        wait_until(lambda: lease_holder() == pid_a, 15)  # the leader's, not a newcomer's
        # The Lease handed to B (as `kubectl edit lease` would): A gives the pair up, B leads.
        lease = home.get(LEASE, "auditd", name)
        assert lease is not None
        lease["spec"]["holderIdentity"] = f"{socket.gethostname()}/{b.proc.pid}"
        home.replace(LEASE, lease)
        wait_until(lambda: leads(port_b) == 1 and leads(port_a) == 0, 20)
        dr2.create(PVC, objects.pvc("after-the-handover", "shop"))
        wait_until(lambda: posted("after-the-handover") == 1, 30)
        time.sleep(3)  # time for a deposed leader to (wrongly) post it again
        assert posted("after-the-handover") == 1 and posted("during-the-outage") == 1
        assert a.proc.poll() is None  # it lives on, following
    finally:
        a.stop()
        if b is not None:
            b.stop()
        home.stop()
        slack.stop()
