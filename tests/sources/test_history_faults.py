"""Fault injection, judged by the resulting history: the exact transitions the inventory makes
from what the real client read off the fake API server. Nothing missed, duplicated or invented.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_until

from auditd.config import ClusterConfig, WatchConfig
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, expired_event
from auditd.sources.kube.events import KubeEvent
from auditd.sources.kube.health import StreamHealth
from auditd.sources.kube.kinds import PVC
from auditd.sources.kube.watch import ListWatcher

SETTINGS = WatchConfig(page_size=2, backoff_initial=0.02, backoff_max=0.2, read_timeout=3)
Row = tuple[str, str, str | None, str | None, str, bool]


def pvc(name: str, namespace: str, phase: str = "Bound") -> dict[str, Any]:
    """A PVC without labels: the rows below are the watch's story, not the labels'."""
    obj = objects.pvc(name, namespace, phase=phase)
    del obj["metadata"]["labels"]
    return obj


class History:
    """Watcher -> inventory, as in the daemon, collecting the transitions in order."""

    def __init__(self, api: FakeKubeAPI, kubeconfig: Any, settings: WatchConfig = SETTINGS) -> None:
        self.api = api
        self.inventory = Inventory()
        self.rows: list[Row] = []
        self._lock = threading.Lock()
        self.health = StreamHealth("dr1", "PersistentVolumeClaim")
        cluster = ClusterConfig(name="dr1", kubeconfig=kubeconfig, context="dr1", role="primary")
        self.watcher = ListWatcher(cluster, PVC, settings, self._apply, self.health, facts_of)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def _apply(self, ev: KubeEvent) -> None:
        with self._lock:
            for t in self.inventory.apply(ev).transitions:
                self.rows.append((t.key.name, t.field, t.old, t.new, t.source, t.late))

    def start(self) -> History:
        self.thread.start()
        self.api.wait_watchers(1)
        return self

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(5)

    def after_baseline(self) -> list[Row]:
        with self._lock:
            return [r for r in self.rows if r[4] != "list"]

    def wait_rows(self, n: int) -> list[Row]:
        wait_until(lambda: len(self.after_baseline()) >= n)
        time.sleep(0.3)  # and nothing more arrives
        return self.after_baseline()


@pytest.fixture
def hist(clusters: dict[str, Any]) -> Iterator[History]:
    api: FakeKubeAPI = clusters["dr1"]
    api.create(PVC, pvc("a", "ns", phase="Pending"))
    api.create(PVC, pvc("b", "ns"))
    api.create(PVC, pvc("c", "ns"))
    h = History(api, clusters["kubeconfig"]).start()
    # The baseline: three objects, first seen by the list.
    assert sorted({(r[0], r[4]) for r in h.rows}) == [("a", "list"), ("b", "list"), ("c", "list")]
    yield h
    h.stop()


BOUND_A: Row = ("a", "phase", "Pending", "Bound", "watch", False)
NEW_D: list[Row] = [
    ("d", "exists", "false", "true", "watch", False),
    ("d", "phase", None, "Bound", "watch", False),
    ("d", "storageClassName", None, "rook-ceph-block", "watch", False),
]


def _changes(api: FakeKubeAPI) -> None:
    api.patch(PVC, "ns", "a", {"status": {"phase": "Bound"}})
    api.create(PVC, pvc("d", "ns"))


def test_connection_dropped_mid_stream(hist: History) -> None:
    hist.api.patch(PVC, "ns", "a", {"status": {"phase": "Bound"}})
    hist.wait_rows(1)
    hist.api.drop_watches()
    hist.api.create(PVC, pvc("d", "ns"))
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]


def test_clean_end_of_stream(hist: History) -> None:
    hist.api.end_watches()
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]


def test_410_at_connect(hist: History) -> None:
    hist.api.fail_next(1, 410, watch=True)
    hist.api.drop_watches()
    _changes(hist.api)
    # Whether the changes arrive by relist or by the resumed watch, each is recorded once.
    rows = hist.wait_rows(4)
    assert sorted(r[:4] for r in rows) == sorted(r[:4] for r in [BOUND_A, *NEW_D])


def test_410_mid_stream(hist: History) -> None:
    hist.api.inject(expired_event())
    wait_until(lambda: hist.health.relists == 1)
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]


def test_compaction_during_outage(hist: History) -> None:
    hist.api.fail_next(2, 503, watch=True)
    hist.api.drop_watches()
    hist.api.patch(PVC, "ns", "a", {"status": {"phase": "Bound"}})
    hist.api.delete(PVC, "ns", "b")
    hist.api.create(PVC, pvc("d", "ns"))
    hist.api.compact()
    rows = hist.wait_rows(5)
    assert rows == [
        ("a", "phase", "Pending", "Bound", "relist", True),
        ("d", "exists", "false", "true", "relist", True),
        ("d", "phase", None, "Bound", "relist", True),
        ("d", "storageClassName", None, "rook-ceph-block", "relist", True),
        ("b", "exists", "true", "false", "relist", True),
    ]


def test_expired_continue_token(clusters: dict[str, Any]) -> None:
    api: FakeKubeAPI = clusters["dr1"]
    for name in "abcde":
        api.create(PVC, pvc(name, "ns"))
    original = api.list_response
    calls = {"n": 0}

    def flaky(resource: Any, query: Any, params: dict[str, str]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # between pages: a, b are deleted and compacted away
            api.delete(PVC, "ns", "a")
            api.compact()
        return original(resource, query, params)

    api.list_response = flaky  # type: ignore[method-assign]
    h = History(api, clusters["kubeconfig"]).start()
    try:
        # "a" was seen on the first page of the abandoned list; the restarted list no longer
        # has it, so the completed list records it gone. Nobody else is invented.
        exists = [(r[0], r[3]) for r in h.rows if r[1] == "exists"]
        assert exists == [
            ("a", "true"),
            ("b", "true"),
            ("c", "true"),
            ("d", "true"),
            ("e", "true"),
            ("a", "false"),
        ]
    finally:
        h.stop()


def test_too_large_resource_version(hist: History) -> None:
    hist.watcher._rv = "999999"
    hist.api.drop_watches()
    wait_until(lambda: hist.health.relists == 1)
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_error_bursts(hist: History, status: int) -> None:
    hist.api.fail_next(4, status, watch=True)
    hist.api.drop_watches()
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]
    assert hist.health.relists == 0


def test_stalled_stream(clusters: dict[str, Any]) -> None:
    api: FakeKubeAPI = clusters["dr1"]
    api.bookmark_interval = 60
    api.create(PVC, pvc("a", "ns", phase="Pending"))
    h = History(
        api,
        clusters["kubeconfig"],
        WatchConfig.model_validate({**SETTINGS.model_dump(), "read_timeout": 0.5}),
    )
    api.stall_next_watch(20)
    h.start()
    try:
        api.patch(PVC, "ns", "a", {"status": {"phase": "Bound"}})  # sent into the hung stream
        assert h.wait_rows(1) == [BOUND_A]
        assert "Timeout" in (h.health.last_error or "")
    finally:
        h.stop()


def test_garbage_line(hist: History) -> None:
    hist.api.inject(b"\x00\xffnot json at all")
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]
    assert hist.health.bad_events == 1


def test_bookmarks_keep_a_quiet_watch_resumable(hist: History, clusters: dict[str, Any]) -> None:
    from auditd.sources.kube.kinds import PV

    for i in range(5):  # other kinds move the revision; the PVC watch is quiet
        clusters["dr1"].create(PV, objects.pv(f"pv{i}", "ns", "x", "img"))
    wait_until(lambda: hist.health.resource_version == str(hist.api.resource_version))
    hist.api.drop_watches()
    hist.api.compact(hist.api.resource_version - 1)  # history before the bookmark is gone
    _changes(hist.api)
    assert hist.wait_rows(4) == [BOUND_A, *NEW_D]
    assert hist.health.relists == 0  # the bookmark's version was still in history
