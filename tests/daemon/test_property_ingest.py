"""Property: whatever JSON a cluster sends for a watched kind, every well-formed neighbour is
committed exactly once and the daemon keeps ingesting (issue 13).

The real pipeline, on SQLite and on PostgreSQL: hypothesis builds objects of each watched kind
whose metadata, spec and status fields are arbitrary JSON (NUL bytes, lone surrogates, names
past Kubernetes' limits, numbers where strings belong, lists where maps belong, opaque long
resourceVersions). Half go through the fake API server's store (so lists carry them too), half
are sent raw on the watch stream as a hostile server would. Beside them, well-formed objects
are created through the API; each must reach the history exactly once.
"""

from __future__ import annotations

import itertools
from typing import Any

from helpers import history, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auditd.daemon.runner import Daemon
from auditd.inventory.facts import EXTRACTORS
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI
from auditd.sources.kube.kinds import DRPC, PV, PVC, VR, VRC, Kind
from auditd.store.models import TransitionRow

# The kinds served by the fake clusters of these tests, and a well-formed object of each.
KINDS: list[tuple[Kind, Any]] = [
    (PVC, lambda n: objects.pvc(n, "shop", volume=f"pv-{n}")),
    (PV, lambda n: objects.pv(n, "shop", n, f"csi-vol-{n}")),
    (VR, lambda n: objects.vr(n, "shop", n)),
    (VRC, lambda n: objects.vrc(n)),
]
assert all(k.kind in EXTRACTORS for k, _ in KINDS) and DRPC.kind in EXTRACTORS

nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "é" * 3, "9" * 40, "n" * 300, ""]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
    max_leaves=8,
)
# Field names the extractors read, so that hostile values land where they are looked at.
FIELDS = [
    "phase", "volumeName", "storageClassName", "claimRef", "csi", "volumeAttributes",
    "persistentVolumeReclaimPolicy", "replicationState", "dataSource", "volumeReplicationClass",
    "state", "lastSyncTime", "conditions", "parameters", "action", "progression",
    "lastGroupSyncTime", "mirroring", "mirroringStatus",
]  # fmt: skip
conditions = st.one_of(
    json_values,
    st.lists(
        st.dictionaries(
            st.sampled_from(["type", "status", "reason", "observedGeneration"]), json_values
        ),
        max_size=3,
    ),
)
sections = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
    st.fixed_dictionaries({"conditions": conditions}),
)
versions = st.one_of(st.integers(1, 10**40).map(str), nasty_text, json_values)
hostile_meta = st.fixed_dictionaries(
    {"name": st.one_of(nasty_text.filter(bool), json_values), "resourceVersion": versions},
    optional={
        "namespace": st.one_of(nasty_text, json_values),
        "uid": json_values,
        "generation": st.one_of(st.integers(0, 3), json_values),
        "deletionTimestamp": json_values,
    },
)
hostile_objects = st.fixed_dictionaries(
    {"metadata": st.one_of(hostile_meta, hostile_meta, json_values)},
    optional={"spec": sections, "status": sections},
)


def _exists_count(url: str) -> dict[tuple[str, str], int]:
    t = TransitionRow
    with history(url) as s:
        rows = s.execute(
            select(t.kind, t.name, func.count())
            .where(t.field == "exists", t.new == "true", t.name.like("good-%"))
            .group_by(t.kind, t.name)
        ).all()
    return {(k, n): int(c) for k, n, c in rows}


def test_arbitrary_objects_never_cost_a_neighbour_or_the_daemon(
    db_url: str, make_config: Any, clusters: dict[str, Any]
) -> None:
    dr1: FakeKubeAPI = clusters["dr1"]
    daemon = Daemon(make_config(database_url=db_url))
    daemon.start()
    serial = itertools.count()
    expected: dict[tuple[str, str], int] = {}
    try:
        assert daemon.wait_synced(20)

        @settings(
            max_examples=40,
            deadline=None,
            derandomize=True,  # the same inputs on every machine and every run
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            st.sampled_from(KINDS),
            st.lists(st.tuples(hostile_objects, st.booleans()), min_size=1, max_size=3),
        )
        def feed(kind_and_factory: tuple[Kind, Any], hostile: list[tuple[Any, bool]]) -> None:
            kind, factory = kind_and_factory
            n = next(serial)
            before = f"good-{n}-a"
            dr1.create(kind, factory(before))
            for j, (obj, raw) in enumerate(hostile):
                if raw or not _can_store(obj):
                    event = {"type": "ADDED" if n % 2 else "MODIFIED", "object": obj}
                    dr1.inject(event, kind.plural)
                else:
                    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "shop"}}
                    obj["metadata"]["name"] = f"hostile-{n}-{j}-{obj['metadata']['name']!s}"
                    dr1.create(kind, obj)
            after = f"good-{n}-b"
            dr1.create(kind, factory(after))
            if n % 4 == 3:
                dr1.drop_watches()  # resume from whatever version the hostile events carried
            expected[(kind.kind, before)] = expected[(kind.kind, after)] = 1
            wait_until(
                lambda: all(
                    _exists_count(db_url).get(k, 0) >= 1
                    for k in ((kind.kind, before), (kind.kind, after))
                ),
                20,
            )

        feed()
        # Every neighbour exactly once (no duplicate from a relist or a replayed batch).
        counts = _exists_count(db_url)
        assert {k: counts.get(k, 0) for k in expected} == expected
        # Still ingesting, and every thread alive.
        dr1.create(PVC, objects.pvc("good-final", "shop"))
        wait_until(lambda: _exists_count(db_url).get((PVC.kind, "good-final")) == 1, 20)
        assert daemon.alive() == (True, "ok")
        assert daemon.ingestor.dropped == 0
        # The run reached every path it is meant to: hostile objects stored as made storable,
        # quarantined, and skipped as bad events; and resumes from the versions they carried.
        snaps = [h.snapshot() for h in daemon.health.values()]
        assert sum(h["bad_events"] for h in snaps) > 0
        assert _count(db_url, "Quarantined") > 0 and _count(db_url, "hostile-%") > 0
        states = {k: h.snapshot() for k, h in daemon.health.items()}
        assert all(h["synced"] or h["absent"] for h in states.values())
    finally:
        daemon.stop()


def _count(url: str, like: str) -> int:
    """Objects ever recorded whose kind (or name) matches ``like``."""
    t = TransitionRow
    with history(url) as s:
        found = s.scalar(
            select(func.count()).where(
                t.field == "exists", t.new == "true", (t.kind == like) | t.name.like(like)
            )
        )
    return int(found or 0)


def _can_store(obj: Any) -> bool:
    """The fake API server's store needs a metadata map with a string name, like a real one."""
    meta = obj.get("metadata")
    return isinstance(meta, dict) and isinstance(meta.get("name"), str) and bool(meta["name"])
