"""The report's healthy share per image, against the rule it states, on random histories.

The share is the part of the window an image's mirror state was classed healthy. An image's
state when the window opened is the ``old`` of its first class change at or after the window's
start; if its first event there is its deletion, its last class before the window; with
neither, as its first class change after the window says, or its class now (the objects
table). Time in another class, unknown, or gone (deleted, until a class is recorded again) is
not healthy. The reference below applies that rule to each image's whole history, sorted; the
report reads the window in one pass. Both see the same histories: changes at the window's
edges, at one instant, after the window, none at all, images deleted (in the window, before
their first change in it, and created again) and many random ones; on SQLite and PostgreSQL,
for a window up to now and one in the past."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from auditd.inventory.inventory import EXISTS
from auditd.inventory.rbd_facts import RBD_IMAGE
from auditd.report.query import Filters, _healthy_shares
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import IMAGE_CLASS, ObjectRow, TransitionRow

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CLASSES = ("healthy", "degraded", "error", "stale", "unknown")
# cluster, pool, image, old, new, at; new None: the image's deletion (an `exists` change)
Change = tuple[str, str, str, str | None, str | None, datetime]
Key = tuple[str, str, str]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def edge_cases() -> tuple[list[Change], dict[Key, str]]:
    """Histories a window over minutes 100-200 must get right, and each image's class now."""
    a = ("dr1", "replicapool", "edge-at-start")
    b = ("dr1", "replicapool", "same-instant")
    c = ("dr2", "replicapool", "only-after")
    d = ("dr2", "replicapool", "never-changed")
    e = ("dr1", "replicapool", "recreated")
    g = ("dr1", "other-pool", "other-pool")
    h = ("dr2", "replicapool", "deleted")
    changes: list[Change] = [
        (*a, "degraded", "healthy", at(100)),  # exactly at the window's start
        (*a, "healthy", "error", at(199)),
        (*b, "healthy", "degraded", at(150)),  # two changes at one instant: id decides
        (*b, "degraded", "healthy", at(150)),
        (*c, "healthy", "stale", at(250)),  # first change after the window: healthy all of it
        (*c, "stale", "error", at(260)),  # (the second says nothing of the window)
        # Healthy, deleted at 120 (a deletion records no class), created again at 160 with no
        # class before it.
        (*e, "degraded", "healthy", at(50)),
        (*e, "healthy", None, at(120)),
        (*e, None, "degraded", at(160)),
        (*e, "degraded", "healthy", at(180)),
        (*g, "unknown", "healthy", at(110)),
        # Healthy since before the window, deleted in it (its first event there), never back.
        (*h, "degraded", "healthy", at(20)),
        (*h, "healthy", None, at(130)),
    ]
    now = {a: "error", b: "healthy", c: "stale", d: "healthy", e: "healthy", g: "healthy"}
    return changes, now


def random_history(seed: int) -> tuple[list[Change], dict[Key, str]]:
    rng = random.Random(seed)
    changes: list[Change] = []
    now: dict[Key, str] = {}
    for i in range(40):
        key = (rng.choice(("dr1", "dr2")), "replicapool", f"csi-vol-{i:03d}")
        cls: str | None = rng.choice(CLASSES)
        # Whole minutes, so that the window's edges and shared instants come up.
        for minute in sorted(rng.randrange(0, 300) for _ in range(rng.randrange(0, 12))):
            if cls is not None and rng.random() < 0.15:
                new = None  # deleted; its next change creates it again, with no class before
            else:
                new = rng.choice([c for c in CLASSES if c != cls])
            changes.append((*key, cls, new, at(minute)))
            cls = new
        if cls is not None:
            now[key] = cls
    # Written as a daemon writes them: in time order, the images interleaved.
    changes.sort(key=lambda c: c[5])
    return changes, now


def reference(
    changes: list[Change], now: dict[Key, str], since: datetime, until: datetime, pools: set[str]
) -> dict[Key, float]:
    """The rule applied image by image, from each image's whole sorted history."""
    by_image: dict[Key, list[tuple[datetime, int, str | None, str | None]]] = {}
    for order, (cluster, pool, image, old, new, when) in enumerate(changes):
        if pool in pools:
            by_image.setdefault((cluster, pool, image), []).append((when, order, old, new))
    out: dict[Key, float] = {}
    for key in set(by_image) | {k for k in now if k[1] in pools}:
        history = sorted(by_image.get(key, []))
        inside = [c for c in history if since <= c[0] < until]
        later = [c for c in history if c[0] >= since and c[3] is not None]  # class changes
        before = [c for c in history if c[0] < since and c[3] is not None]
        if inside and inside[0][3] is None:  # its deletion first
            state = before[-1][3] if before else None
        elif later:
            state = later[0][2]
        elif key in now:
            state = now[key]
        else:
            continue  # gone before the window, never back: not in the report
        start, healthy = since, 0.0
        for when, _, _, new in inside:
            if state == "healthy":
                healthy += (when - start).total_seconds()
            state, start = new, when
        if state == "healthy":
            healthy += (until - start).total_seconds()
        out[key] = round(min(1.0, healthy / (until - since).total_seconds()), 4)
    return out


def shares(
    url: str, changes: list[Change], now: dict[Key, str], since: datetime, until: datetime,
    f: Filters,
) -> dict[Key, float]:  # fmt: skip
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            # The order written is the order of ids, the tie-break at one instant.
            s.add_all(
                TransitionRow(
                    cluster=cluster, kind=RBD_IMAGE, namespace=pool, name=image, field="class",
                    old=old, new=new, observed_at=when, source="probe",
                ) if new is not None else TransitionRow(
                    cluster=cluster, kind=RBD_IMAGE, namespace=pool, name=image, field=EXISTS,
                    old="true", new="false", observed_at=when, source="probe",
                )
                for cluster, pool, image, old, new, when in changes
            )  # fmt: skip
            # Other fields of the same images, which the share must not read as classes.
            s.add_all(
                TransitionRow(
                    cluster=cluster, kind=RBD_IMAGE, namespace=pool, name=image,
                    field="state", old="up+replaying", new="up+error", observed_at=when,
                    source="probe",
                )
                for cluster, pool, image, _, _, when in changes[::3]
            )  # fmt: skip
            s.add_all(
                ObjectRow(
                    cluster=cluster, kind=RBD_IMAGE, namespace=pool, name=image,
                    facts={"class": cls}, updated_at=T0,
                )
                for (cluster, pool, image), cls in now.items()
            )  # fmt: skip
            s.commit()
            got = _healthy_shares(s, since, until, f)
    finally:
        engine.dispose()
    return {key: v["healthy_share"] for key, v in got.items()}


WINDOWS = {"up to now": (at(100), at(400)), "in the past": (at(100), at(200))}


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_edge_cases_follow_the_rule(db_url: str, window: str) -> None:
    since, until = WINDOWS[window]
    changes, now = edge_cases()
    got = shares(db_url, changes, now, since, until, Filters())
    assert got == reference(changes, now, since, until, {"replicapool", "other-pool"})
    if window == "in the past":
        # Spelled out for the window of minutes 100-200, so that the rule itself is pinned.
        assert got == {
            ("dr1", "replicapool", "edge-at-start"): 0.99,
            # Healthy to 150, degraded for no time, healthy again: in the other order it
            # would end degraded (0.5).
            ("dr1", "replicapool", "same-instant"): 1.0,
            ("dr2", "replicapool", "only-after"): 1.0,
            ("dr2", "replicapool", "never-changed"): 1.0,
            ("dr1", "replicapool", "recreated"): 0.4,  # healthy to 120, and from 180
            ("dr2", "replicapool", "deleted"): 0.3,  # healthy until its deletion at 130
            ("dr1", "other-pool", "other-pool"): 0.9,
        }


@pytest.mark.parametrize("seed", range(4))
def test_random_histories_follow_the_rule(db_url: str, seed: int) -> None:
    changes, now = random_history(seed)
    since, until = at(60), at(240)
    got = shares(db_url, changes, now, since, until, Filters(pools=("replicapool",)))
    assert got == reference(changes, now, since, until, {"replicapool"})


def test_a_pool_filter_leaves_other_pools_out(tmp_path: object) -> None:
    changes, now = edge_cases()
    got = shares(
        f"sqlite:///{tmp_path}/a.db", changes, now, *WINDOWS["in the past"],
        Filters(pools=("other-pool",)),
    )  # fmt: skip
    assert got == {("dr1", "other-pool", "other-pool"): 0.9}


def test_the_index_it_reads_holds_image_class_changes() -> None:
    # models.py spells the partial index's rows out (the store does not import the inventory).
    assert f"kind = '{RBD_IMAGE}' AND field = 'class'" == str(IMAGE_CLASS)
