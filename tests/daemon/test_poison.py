"""One bad object never stops the audit (issue 13, items 1-4).

The real pipeline in one process (fake API servers -> the kubernetes client -> watcher ->
ingest -> SQLite or PostgreSQL), fed hostile objects beside well-formed neighbours. What must
hold: every neighbour is committed exactly once, the daemon keeps ingesting, memory and
database agree, and what could not be taken in is quarantined with its reason (status, report,
metric), never silently dropped and never able to block the stream or the batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import history, wait_until
from sqlalchemy import func, select

from auditd.clock import SYSTEM
from auditd.config import Config
from auditd.daemon.runner import Daemon
from auditd.inventory.inventory import QUARANTINED
from auditd.report.query import load_report
from auditd.report.status import load_status, status_table
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI
from auditd.sources.kube.kinds import PVC, VR
from auditd.store.db import make_engine
from auditd.store.migrate import upgrade
from auditd.store.models import ObjectRow, TransitionRow


@pytest.fixture
def config(make_config: Any, db_url: str) -> Config:
    cfg: Config = make_config(database_url=db_url)
    return cfg


@pytest.fixture
def run(config: Config) -> Iterator[Daemon]:
    daemon = Daemon(config)
    daemon.start()
    assert daemon.wait_synced(20)
    yield daemon
    daemon.stop()


def _created(url: str, cluster: str, kind: str, name: str) -> int:
    """How many times the history says this object came into existence."""
    t = TransitionRow
    with history(url) as s:
        created = s.scalar(
            select(func.count()).where(
                t.cluster == cluster,
                t.kind == kind,
                t.name == name,
                t.field == "exists",
                t.new == "true",
            )
        )
    return int(created or 0)


def _stored(url: str, kind: str | None = None) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    q = select(ObjectRow)
    if kind is not None:
        q = q.where(ObjectRow.kind == kind)
    with history(url) as s:
        return {(r.cluster, r.kind, r.namespace, r.name): dict(r.facts) for r in s.scalars(q)}


def _neighbours(api: FakeKubeAPI, prefix: str, n: int = 5) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(n)]
    for name in names:
        api.create(PVC, objects.pvc(name, "shop"))
    return names


def _memory_matches_database(daemon: Daemon, url: str) -> None:
    stored = _stored(url)
    held = {
        tuple(k): known.facts
        for k, known in daemon.ingestor.inventory.objects.items()
        if k.kind not in ("AuditStream", "RbdPool", "RbdImage")
    }
    stored = {k: v for k, v in stored.items() if k[1] not in ("AuditStream", "RbdPool", "RbdImage")}
    assert held == stored


def test_values_no_database_can_store_are_made_storable_and_neighbours_commit_once(
    run: Daemon, clusters: dict[str, Any], db_url: str
) -> None:
    """Item 1 (PostgreSQL: NUL, a resourceVersion over 32 characters) and item 2 (SQLite: a
    lone surrogate) each used to fail the whole batch; the batch with its neighbours was
    retried forever (PostgreSQL) or dropped silently (SQLite)."""
    dr1: FakeKubeAPI = clusters["dr1"]
    before = _neighbours(dr1, "before")
    nul = objects.pvc("nul-class", "shop")
    nul["spec"]["storageClassName"] = "rook\x00ceph"
    dr1.create(PVC, nul)
    dr1.create(PVC, objects.pvc("lone-\ud800-surrogate", "shop"))
    long_rv = objects.pvc("long-rv", "shop")
    long_rv["metadata"].update(resourceVersion="7" * 40, uid="u" * 100)
    dr1.inject({"type": "ADDED", "object": long_rv}, "persistentvolumeclaims")
    after = _neighbours(dr1, "after")
    for name in before + after:
        wait_until(lambda n=name: _created(db_url, "dr1", PVC.kind, n) == 1, 20)
    pvcs = _stored(db_url, PVC.kind)
    assert pvcs[("dr1", PVC.kind, "shop", "nul-class")]["storageClassName"] == "rook\ufffdceph"
    assert ("dr1", PVC.kind, "shop", "lone-\ufffd-surrogate") in pvcs
    # The injected object is not on the server: the watch resumed from its (too large)
    # version, relisted, and the list said it is gone. Recorded, not stuck.
    wait_until(lambda: _created(db_url, "dr1", PVC.kind, "long-rv") == 1, 20)
    dr1.create(PVC, objects.pvc("later", "shop"))
    wait_until(lambda: _created(db_url, "dr1", PVC.kind, "later") == 1, 20)
    for name in before + after:
        assert _created(db_url, "dr1", PVC.kind, name) == 1
    _memory_matches_database(run, db_url)


def test_a_malformed_object_is_quarantined_not_the_stream_and_survives_a_restart(
    config: Config, clusters: dict[str, Any], db_url: str
) -> None:
    """Item 3: `status.conditions: 5` or a generation given as a string killed the kind's stream on
    that cluster (stream health still ok), and after a restart the list failed as a whole."""
    dr1: FakeKubeAPI = clusters["dr1"]
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.wait_synced(20)
        bad_conditions = objects.vr("bad-conditions", "shop", "x")
        bad_conditions["status"] = {"state": "Primary", "conditions": 5}
        dr1.create(VR, bad_conditions)
        dr1.create(VR, objects.vr("bad-generation", "shop", "y"))
        # A generation compared across types (the fake keeps metadata.generation its own, so
        # the string is on the condition's side of the comparison).
        bad = {"conditions": [{"type": "Completed", "status": "True", "observedGeneration": "2"}]}
        dr1.patch(VR, "shop", "bad-generation", {"status": bad})
        for name in ("good-a", "good-b"):
            dr1.create(VR, objects.vr(name, "shop", name))
        for name in ("good-a", "good-b"):
            wait_until(lambda n=name: _created(db_url, "dr1", VR.kind, n) == 1, 20)
        wait_until(lambda: len(_stored(db_url, QUARANTINED)) == 2, 20)
        held = _stored(db_url, QUARANTINED)
        reasons = {f["name"]: f["reason"] for f in held.values()}
        assert set(reasons) == {"bad-conditions", "bad-generation"}
        assert all("cannot read its facts: TypeError" in r for r in reasons.values())
        health = daemon.health[("dr1", VR.kind)].snapshot()
        assert health["connected"] and health["bad_events"] >= 2
        # bad-generation was well-formed before its patch: its last good state is kept.
        assert ("dr1", VR.kind, "shop", "bad-generation") in _stored(db_url, VR.kind)
        _memory_matches_database(daemon, db_url)
    finally:
        daemon.stop()
    # The restart's list carries both bad objects: the list is fine, they stay quarantined.
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.wait_synced(20)
        dr1.create(VR, objects.vr("good-c", "shop", "good-c"))
        wait_until(lambda: _created(db_url, "dr1", VR.kind, "good-c") == 1, 20)
        health = daemon.health[("dr1", VR.kind)].snapshot()
        assert health["synced"] and "not a valid list" not in (health["last_error"] or "")
        assert len(_stored(db_url, QUARANTINED)) == 2
        assert _created(db_url, "dr1", VR.kind, "good-a") == 1  # the resync added nothing
        # Fixed at the source: the quarantine ends, in history.
        dr1.patch(VR, "shop", "bad-conditions", {"status": {"conditions": []}})
        wait_until(lambda: len(_stored(db_url, QUARANTINED)) == 1, 20)
        with history(db_url) as s:
            now = SYSTEM.now()
            status = load_status(s, now)
            report = load_report(s, now.replace(year=now.year - 1), now)
        assert [q["name"] for q in status["quarantined"]] == ["bad-generation"]
        assert not status["healthy"]
        assert "QUARANTINED" in status_table(status, now)
        spots = {b["what"]: b for b in report.blind_spots if b["state"] == "quarantined"}
        assert spots["object VolumeReplication/shop/bad-generation"]["ended_at"] is None
        assert spots["object VolumeReplication/shop/bad-conditions"]["ended_at"] is not None
    finally:
        daemon.stop()


_REFUSE_PG = """
CREATE FUNCTION refuse_some() RETURNS trigger AS $$
BEGIN
  IF substr(NEW.name, 1, 7) = 'refused' AND NEW.kind <> 'Quarantined' THEN
    RAISE EXCEPTION 'value refused by a site policy' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_some BEFORE INSERT ON transitions
  FOR EACH ROW EXECUTE FUNCTION refuse_some();
"""
_REFUSE_SQLITE = """
CREATE TRIGGER refuse_some BEFORE INSERT ON transitions
WHEN substr(NEW.name, 1, 7) = 'refused' AND NEW.kind <> 'Quarantined'
BEGIN SELECT RAISE(ABORT, 'value refused by a site policy'); END;
"""


def test_a_value_the_database_refuses_is_isolated_quarantined_and_the_rest_commits(
    config: Config, clusters: dict[str, Any], db_url: str
) -> None:
    """Item 1's cure for refusals nobody foresaw: a permanent error is not retried as if the
    database were down; the batch is split until the item is isolated, that item is
    quarantined with the reason, everything else commits once, memory equals the database."""
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(_REFUSE_PG if engine.dialect.name == "postgresql" else _REFUSE_SQLITE)
    engine.dispose()
    dr1: FakeKubeAPI = clusters["dr1"]
    # In the first list (one page with its neighbours) and later on the watch.
    early = _neighbours(dr1, "early", 7)
    dr1.create(PVC, objects.pvc("refused-in-list", "shop"))
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.wait_synced(30)
        dr1.create(PVC, objects.pvc("refused-on-watch", "shop"))
        late = _neighbours(dr1, "late", 7)
        for name in early + late:
            wait_until(lambda n=name: _created(db_url, "dr1", PVC.kind, n) == 1, 30)
        wait_until(lambda: len(_stored(db_url, QUARANTINED)) == 2, 30)
        reasons = [f["reason"] for f in _stored(db_url, QUARANTINED).values()]
        assert all("refused by a site policy" in r for r in reasons), reasons
        assert daemon.ingestor.quarantined == 2 and daemon.ingestor.dropped == 0
        assert daemon.ingestor.store.failing_since is None  # refused is not "down"
        dr1.create(PVC, objects.pvc("after-all", "shop"))
        wait_until(lambda: _created(db_url, "dr1", PVC.kind, "after-all") == 1, 20)
        for name in early + late:
            assert _created(db_url, "dr1", PVC.kind, name) == 1
        _memory_matches_database(daemon, db_url)
        port = daemon.ops.port if daemon.ops else 0
        from ops_client import value

        assert value(port, "auditd_quarantined_objects", cluster="dr1", kind=PVC.kind) == 2
    finally:
        daemon.stop()


def test_a_garbage_resource_version_in_a_bookmark_relists(
    run: Daemon, clusters: dict[str, Any], db_url: str
) -> None:
    """Item 4: the server rejects the version (422 Invalid, before the stream starts); resuming
    from it again is refused forever, so the watcher relists once and goes on."""
    dr1: FakeKubeAPI = clusters["dr1"]
    relists = run.health[("dr1", PVC.kind)].snapshot()["relists"]
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "not-a-number"}}}

    def taken() -> bool:
        return run.health[("dr1", PVC.kind)].snapshot()["resource_version"] == "not-a-number"

    # The fake's own bookmarks (every 0.2 s) would overwrite the garbage version before the
    # drop below on a loaded machine (CI once: no relist): only the one already due still comes.
    dr1.bookmark_interval = 3600
    # Sent to the watch open at that instant: on a loaded machine (CI, beside the Ceph lab)
    # that watch may be ending, and the bookmark goes with it; the next one gets it again.
    for _ in range(4):
        dr1.inject(bookmark, "persistentvolumeclaims")
        with contextlib.suppress(AssertionError):
            wait_until(taken, 5)
            break
    assert taken()
    dr1.drop_watches()  # the next resume starts from the bookmark's version
    dr1.create(PVC, objects.pvc("after-garbage", "shop"))
    wait_until(lambda: _created(db_url, "dr1", PVC.kind, "after-garbage") == 1, 20)
    health = run.health[("dr1", PVC.kind)].snapshot()
    assert health["relists"] == relists + 1
    garbage = [
        r
        for r in dr1.watch_requests("persistentvolumeclaims")
        if r.get("resourceVersion") == "not-a-number"
    ]
    assert len(garbage) == 1
