"""The list+watch loop against the fake API server, through the real kubernetes client.

Each test drives a fault and asserts what the loop handed over (and what it asked the server),
so that nothing is missed, duplicated or invented.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helpers import wait_until
from paths import DATA

from auditd.config import ClusterConfig, WatchConfig
from auditd.inventory.facts import facts_of
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, expired_event
from auditd.sources.kube.events import (
    KubeEvent,
    ObjectEvent,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.sources.kube.health import StreamHealth
from auditd.sources.kube.kinds import PVC
from auditd.sources.kube.watch import Backoff, ListWatcher

SETTINGS = WatchConfig(
    page_size=2, backoff_initial=0.02, backoff_max=0.2, read_timeout=3, server_timeout=60
)


class Run:
    def __init__(
        self,
        api: FakeKubeAPI,
        kubeconfig: Any,
        context: str = "dr1",
        settings: WatchConfig = SETTINGS,
    ) -> None:
        self.api = api
        self.events: list[KubeEvent] = []
        self.health = StreamHealth(context, "PersistentVolumeClaim")
        cluster = ClusterConfig(
            name=context, kubeconfig=kubeconfig, context=context, role="primary"
        )
        self.watcher = ListWatcher(
            cluster, PVC, settings, self.events.append, self.health, facts_of
        )
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def start(self, watchers: int = 1) -> Run:
        self.thread.start()
        self.api.wait_watchers(watchers)
        return self

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "watcher did not stop"

    def names(self) -> list[tuple[str, str]]:
        """Events as (type, name); a complete list (start, pages, end) as (source, names)."""
        out: list[tuple[str, str]] = []
        listed: list[str] = []
        for e in list(self.events):
            if isinstance(e, SnapshotStart):
                listed = []
            elif isinstance(e, SnapshotPage):
                listed += [o.name for o in e.objects]
            elif isinstance(e, SnapshotEnd):
                out.append((e.source, ",".join(sorted(listed))))
            else:
                out.append((e.type, e.object.name))
        return out

    def watch_rvs(self) -> list[str]:
        return [q["resourceVersion"] for q in self.api.watch_requests()]


@pytest.fixture
def dr1(clusters: dict[str, Any]) -> Iterator[tuple[FakeKubeAPI, Any]]:
    api: FakeKubeAPI = clusters["dr1"]
    for i in range(5):
        api.create(PVC, objects.pvc(f"p{i}", "ns"))
    yield api, clusters["kubeconfig"]


def test_paged_list_then_watch_from_list_version(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        lists = api.list_requests()
        assert [q.get("continue") is not None for q in lists] == [
            False,
            True,
            True,
        ]  # 5 items, pages of 2
        assert run.watch_rvs() == ["1005"]
        assert api.watch_requests()[0]["allowWatchBookmarks"] == "true"
        api.create(PVC, objects.pvc("new", "ns"))
        api.patch(PVC, "ns", "new", {"status": {"phase": "Lost"}})
        api.delete(PVC, "ns", "new")
        wait_until(lambda: len(run.names()) == 4)
        assert run.names() == [
            ("list", "p0,p1,p2,p3,p4"),
            ("ADDED", "new"),
            ("MODIFIED", "new"),
            ("DELETED", "new"),
        ]
    finally:
        run.stop()


def test_dropped_connection_resumes_from_last_event(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.create(PVC, objects.pvc("a", "ns"))  # rv 1006
        wait_until(lambda: len(run.names()) == 2)
        api.drop_watches()
        api.create(PVC, objects.pvc("b", "ns"))  # rv 1007, while disconnected
        wait_until(lambda: len(run.names()) == 3)
        assert run.names()[1:] == [("ADDED", "a"), ("ADDED", "b")]
        assert run.watch_rvs() == ["1005", "1006"]
        assert len(api.list_requests()) == 3  # no relist
        assert run.health.errors == 1
    finally:
        run.stop()


def test_clean_end_of_stream_resumes_without_relist(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.create(PVC, objects.pvc("a", "ns"))
        wait_until(lambda: len(run.names()) == 2)
        api.end_watches()
        api.wait_watchers(1)
        wait_until(lambda: len(api.watch_requests()) == 2)
        api.create(PVC, objects.pvc("b", "ns"))
        wait_until(lambda: len(run.names()) == 3)
        assert run.watch_rvs() == ["1005", "1006"]
        assert len(api.list_requests()) == 3
        assert run.health.errors == 0
    finally:
        run.stop()


def test_bookmarks_advance_the_resume_version(
    dr1: tuple[FakeKubeAPI, Any], clusters: dict[str, Any]
) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        # A change to another kind moves the global resourceVersion; only a bookmark tells us.
        clusters["dr1"].create(objects_kind_pv(), objects.pv("pv9", "ns", "x", "img"))
        wait_until(lambda: run.health.resource_version == "1006", timeout=3)
        api.drop_watches()
        wait_until(lambda: len(api.watch_requests()) == 2)
        assert run.watch_rvs() == ["1005", "1006"]
        assert run.names() == [("list", "p0,p1,p2,p3,p4")]
    finally:
        run.stop()


def objects_kind_pv() -> Any:
    from auditd.sources.kube.kinds import PV

    return PV


def test_410_mid_stream_relists_and_reconciles(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.inject(expired_event())
        wait_until(lambda: len(run.names()) == 2)
        assert run.names() == [("list", "p0,p1,p2,p3,p4"), ("relist", "p0,p1,p2,p3,p4")]
        assert run.health.relists == 1
    finally:
        run.stop()


def test_compaction_during_outage_gives_410_and_relist(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.fail_next(2, 503, watch=True)  # the outage: reconnects fail for a while
        api.drop_watches()
        api.delete(PVC, "ns", "p0")
        api.create(PVC, objects.pvc("q", "ns"))
        api.compact()
        wait_until(lambda: len(run.names()) == 2)
        assert run.names() == [("list", "p0,p1,p2,p3,p4"), ("relist", "p1,p2,p3,p4,q")]
    finally:
        run.stop()


def test_expired_continue_token_restarts_the_list(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    # The second page request gets a 410: the token expired between pages.
    original = api.list_response
    calls = {"n": 0}

    def flaky(resource: Any, query: Any, params: dict[str, str]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            api.create(PVC, objects.pvc("late", "ns"))
            api.compact()
        return original(resource, query, params)

    api.list_response = flaky  # type: ignore[method-assign]
    run = Run(api, kc).start()
    try:
        assert run.names() == [("list", "late,p0,p1,p2,p3,p4")]
        starts = [q for q in api.list_requests() if "continue" not in q]
        assert len(starts) == 2
    finally:
        run.stop()


def test_too_large_resource_version_relists(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        run.watcher._rv = "999999"  # as after an etcd restore: our version is from the future
        api.drop_watches()
        wait_until(lambda: run.health.relists == 1)
        assert run.names()[-1] == ("relist", "p0,p1,p2,p3,p4")
    finally:
        run.stop()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_http_errors_back_off_and_resume(dr1: tuple[FakeKubeAPI, Any], status: int) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.fail_next(3, status, watch=True, retry_after=0 if status == 429 else None)
        api.drop_watches()
        api.create(PVC, objects.pvc("a", "ns"))
        wait_until(lambda: len(run.names()) == 2)
        assert run.watch_rvs()[-1] == "1005"
        assert len(api.watch_requests()) == 5  # first, 3 failures, the resume
        assert run.health.errors == 4  # the drop and the three failures
        assert run.names()[1] == ("ADDED", "a")
    finally:
        run.stop()


def test_stalled_stream_hits_read_timeout_and_resumes(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    api.bookmark_interval = 60  # no bookmarks to keep the connection alive
    api.stall_next_watch(30)
    run = Run(
        api, kc, settings=WatchConfig.model_validate({**SETTINGS.model_dump(), "read_timeout": 0.5})
    ).start(watchers=1)
    try:
        wait_until(lambda: len(api.watch_requests()) >= 2, timeout=5)
        assert run.health.errors >= 1 and "Timeout" in (run.health.last_error or "")
    finally:
        run.stop()


def test_garbage_line_resumes_from_last_good_version(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.create(PVC, objects.pvc("a", "ns"))
        wait_until(lambda: len(run.names()) == 2)
        api.inject(b"{this is not json")
        wait_until(lambda: len(api.watch_requests()) == 2)
        assert run.watch_rvs() == ["1005", "1006"]
        assert run.health.bad_events == 1
        api.create(PVC, objects.pvc("b", "ns"))
        wait_until(lambda: len(run.names()) == 3)
        assert run.names()[1:] == [("ADDED", "a"), ("ADDED", "b")]
    finally:
        run.stop()


def test_event_without_metadata_and_unknown_type_are_skipped(dr1: tuple[FakeKubeAPI, Any]) -> None:
    api, kc = dr1
    run = Run(api, kc).start()
    try:
        api.inject({"type": "ADDED", "object": {"kind": "PersistentVolumeClaim"}})
        api.inject(
            {"type": "WEIRD", "object": {"metadata": {"name": "x", "resourceVersion": "1005"}}}
        )
        api.create(PVC, objects.pvc("a", "ns"))
        wait_until(lambda: len(run.names()) == 2)
        assert run.names()[1] == ("ADDED", "a")
        assert run.health.bad_events == 2
        assert len(api.watch_requests()) == 1  # the stream survived
    finally:
        run.stop()


def test_unauthorized_is_reported_and_retried(clusters: dict[str, Any]) -> None:
    api: FakeKubeAPI = clusters["dr1"]
    api.token = "right-token"  # the kubeconfig has no token: every request is 401
    run = Run(api, clusters["kubeconfig"])
    run.thread.start()
    try:
        wait_until(lambda: run.health.errors >= 1)
        assert "401" in (run.health.last_error or "") and not run.health.synced
        api.token = None  # credentials fixed: it recovers by itself
        wait_until(lambda: run.health.synced, timeout=5)
    finally:
        run.stop()


def test_missing_context_is_a_clear_error(clusters: dict[str, Any]) -> None:
    run = Run(clusters["dr1"], clusters["kubeconfig"], context="nope")
    run.thread.start()
    try:
        wait_until(lambda: run.health.errors >= 1)
        assert "cluster unavailable" in (run.health.last_error or "")
        assert "nope" in (run.health.last_error or "")
    finally:
        run.stop()


def test_two_clusters_fail_independently(clusters: dict[str, Any]) -> None:
    dr1, dr2 = clusters["dr1"], clusters["dr2"]
    a = Run(dr1, clusters["kubeconfig"], "dr1").start()
    b = Run(dr2, clusters["kubeconfig"], "dr2").start()
    try:
        dr1.fail_next(100, 503, watch=True)
        dr1.drop_watches()
        dr2.create(PVC, objects.pvc("x", "ns"))
        wait_until(lambda: len(b.names()) == 2)
        assert isinstance(b.events[-1], ObjectEvent) and b.health.connected
        wait_until(lambda: not a.health.connected and a.health.errors >= 2)
    finally:
        a.stop()
        b.stop()


def test_backoff_is_capped_and_jittered() -> None:
    import random

    b = Backoff(0.8, 30, random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0.4 <= d <= 30 for d in delays)
    assert delays[-1] >= 15  # reached the cap's jitter band
    b.reset()
    assert b.next() <= 0.8


def test_missing_crd_is_logged_once_and_found_later(
    clusters: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from auditd.sources.kube.kinds import DRPC

    api: FakeKubeAPI = clusters["dr1"]
    settings = WatchConfig.model_validate({**SETTINGS.model_dump(), "crd_recheck": 0.3})
    events: list[KubeEvent] = []
    health = StreamHealth("dr1", "DRPlacementControl")
    cluster = ClusterConfig(
        name="dr1", kubeconfig=clusters["kubeconfig"], context="dr1", role="primary"
    )
    watcher = ListWatcher(cluster, DRPC, settings, events.append, health, facts_of)
    t = threading.Thread(target=watcher.run, daemon=True)
    caplog.set_level("INFO")
    t.start()
    try:
        wait_until(lambda: health.absent)
        time.sleep(1.0)  # several rechecks
        assert not api.list_requests(DRPC.plural) and health.errors == 0
        assert sum("is not served" in r.getMessage() for r in caplog.records) == 1
        crd = DATA / "crds" / "ramendr.openshift.io_drplacementcontrols.yaml"
        installed = api.install_crd(yaml.safe_load(crd.read_text()))  # Ramen arrives
        assert installed.plural == DRPC.plural
        api.create(
            DRPC, {"metadata": {"name": "app", "namespace": "ns"}, "status": {"phase": "Deployed"}}
        )
        wait_until(lambda: health.synced and not health.absent)
        api.wait_watchers(1, DRPC.plural)
        api.remove_resource(DRPC)  # and uninstalled again: its objects are gone
        api.drop_watches()
        wait_until(lambda: health.absent)
        ends = [e for e in events if isinstance(e, SnapshotEnd)]
        assert [e.source for e in ends] == ["list", "relist"]
    finally:
        watcher.stop()
        t.join(5)


def test_namespace_and_label_filters(clusters: dict[str, Any]) -> None:
    api: FakeKubeAPI = clusters["dr1"]
    for ns in ("app", "kube-system", "other"):
        p = objects.pvc(f"p-{ns}", ns)
        p["metadata"]["labels"] = {"dr": "yes"}
        api.create(PVC, p)
    api.create(PVC, objects.pvc("unlabelled", "app"))
    settings = WatchConfig.model_validate(
        {
            **SETTINGS.model_dump(),
            "namespaces": ["app", "kube-system"],
            "exclude_namespaces": ["kube-system"],
        }
    )
    run = Run(api, clusters["kubeconfig"], settings=settings)
    run.watcher.label_selector = "dr=yes"
    run.start()
    try:
        api.create(
            PVC,
            {
                **objects.pvc("late", "other"),
                "metadata": {"name": "late", "namespace": "other", "labels": {"dr": "yes"}},
            },
        )
        api.create(
            PVC,
            {
                **objects.pvc("late", "app"),
                "metadata": {"name": "late", "namespace": "app", "labels": {"dr": "yes"}},
            },
        )
        wait_until(lambda: len(run.names()) == 2)
        assert run.names() == [("list", "p-app"), ("ADDED", "late")]
        assert all(
            q.get("labelSelector") == "dr=yes" for q in api.list_requests() + api.watch_requests()
        )
    finally:
        run.stop()


def test_a_failing_stream_logs_once_when_it_goes_bad_and_once_when_it_recovers(
    dr1: tuple[FakeKubeAPI, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, item 4: an unreachable cluster logged a line per kind per retry."""
    api, kc = dr1
    api.fail_next(12, 503, watch=False)  # a dozen failed lists in a row, then it answers
    with caplog.at_level(logging.DEBUG, logger="auditd.sources.kube.watch"):
        run = Run(api, kc)
        run.thread.start()
        try:
            wait_until(lambda: run.health.synced, timeout=20)
        finally:
            run.stop()
    lines = [r for r in caplog.records if r.name == "auditd.sources.kube.watch"]
    warnings = [r.getMessage() for r in lines if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "503" in warnings[0], warnings
    assert any(r.getMessage().startswith("recovered after") for r in lines)
