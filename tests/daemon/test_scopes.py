"""Per-pair leadership inside the ingest writer: it writes the pairs it leads, follows the
others in memory (kept warm through a reload), and takes a pair over by reconciling it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import history
from sqlalchemy import select

from auditd.config import parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Tick
from auditd.daemon.leader import Leadership, State
from auditd.daemon.scopes import GLOBAL, Scopes
from auditd.inventory.facts import facts_of
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.engine import RuleEngine
from auditd.sim import objects
from auditd.sources.kube.events import (
    ObjectEvent,
    Observed,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import TransitionRow, ViolationRow

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
P1, P2 = "pair/p1", "pair/p2"
CONFIG = parse_config(
    {
        "clusters": [
            {"name": "a1", "role": "primary"},
            {"name": "a2", "role": "secondary"},
            {"name": "b1", "role": "primary"},
            {"name": "b2", "role": "secondary"},
            {"name": "lone", "role": "primary"},
        ],
        "pairs": [
            {"name": "p1", "clusters": ["a1", "a2"]},
            {"name": "p2", "clusters": ["b1", "b2"]},
        ],
        "rules": {"pvc-on-secondary": {"for": "0s"}},
    }
)


class Elected(Leadership):
    """What an election decided, set by the test (the election itself: test_leader.py)."""

    def __init__(self, led: set[str]) -> None:
        self.led = led

    def state(self, scope: str) -> State:
        return "lead" if scope in self.led else "follow"


def test_scopes_of_a_config() -> None:
    scopes = Scopes.of(CONFIG)
    assert scopes.units == ["cluster/lone", P1, P2]
    assert scopes.all[-1] == GLOBAL
    assert scopes.of_cluster("b2") == P2 and scopes.of_cluster(None) == GLOBAL
    assert scopes.of_violation("p1", "a2") == P1
    assert scopes.of_violation(None, "lone") == "cluster/lone"
    assert scopes.of_violation(None, None) == GLOBAL
    assert scopes.clusters_of([P2, GLOBAL]) == {"b1", "b2"}


def _pvc_listed(cluster: str, name: str, at: datetime) -> list[object]:
    obj = objects.pvc(name, "shop")
    obj["metadata"].update(uid=f"uid-{cluster}-{name}", resourceVersion="7")
    seen = Observed(
        "shop", name, f"uid-{cluster}-{name}", "7", facts_of("PersistentVolumeClaim", obj)
    )
    kind = "PersistentVolumeClaim"
    return [
        SnapshotStart(cluster, kind, "list", at),
        SnapshotPage(cluster, kind, [seen], "list", at),
        SnapshotEnd(cluster, kind, "7", "list", at),
    ]


def test_writes_what_it_leads_follows_the_rest_and_takes_a_pair_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    elected = Elected({P1, GLOBAL, "cluster/lone"})
    ing = Ingestor(
        session_factory(engine), Inventory(), RuleEngine(CONFIG), {}, ["slack"], leadership=elected
    )

    def stored() -> tuple[set[str], set[str]]:
        with history(url) as s:
            pvcs = {
                f"{t.cluster}/{t.name}"
                for t in s.scalars(select(TransitionRow).where(TransitionRow.field == "exists"))
            }
            firing = set(
                s.scalars(select(ViolationRow.subject).where(ViolationRow.state == "firing"))
            )
        return pvcs, firing

    # A stray claim on each pair's secondary: this writer records and fires only p1's.
    ing._write_or_follow([*_pvc_listed("a2", "stray", T), *_pvc_listed("b2", "stray", T)])
    pvcs, firing = stored()
    assert pvcs == {"a2/stray"}
    assert firing == {"a2/PersistentVolumeClaim/shop/stray"}
    b2 = ObjectKey("b2", "PersistentVolumeClaim", "shop", "stray")
    assert b2 in ing.inventory.objects  # followed: in memory, warm
    assert set(ing.led_active()) == {("pvc-on-secondary", "a2/PersistentVolumeClaim/shop/stray")}

    # Memory reloaded from the database (as after a refused write): p2 stays as watched.
    ing._restore(ing.inventory.checkpoint())
    assert b2 in ing.inventory.objects

    # Timers never fire or resolve what another replica leads.
    ing._write_or_follow([Tick(T + timedelta(minutes=10))])
    assert stored()[1] == {"a2/PersistentVolumeClaim/shop/stray"}

    # p2's leader dies; this replica leads it now: reconciled from what it watched, as a
    # relist, and its violation fires here.
    elected.led.add(P2)
    ing._write_or_follow([Tick(T + timedelta(minutes=11))])
    pvcs, firing = stored()
    assert pvcs == {"a2/stray", "b2/stray"}
    assert firing == {
        "a2/PersistentVolumeClaim/shop/stray",
        "b2/PersistentVolumeClaim/shop/stray",
    }
    with history(url) as s:
        late = s.scalars(select(TransitionRow).where(TransitionRow.cluster == "b2")).first()
    assert late is not None and late.source == "relist" and late.late

    # And hands it back: it follows p2 again, writes nothing of it.
    elected.led.discard(P2)
    gone = Observed("shop", "stray", "uid-b2-stray", "8", {})
    ing._write_or_follow([ObjectEvent("b2", b2.kind, "DELETED", gone, T + timedelta(minutes=12))])
    assert stored()[1] == {
        "a2/PersistentVolumeClaim/shop/stray",
        "b2/PersistentVolumeClaim/shop/stray",
    }
    assert b2 not in ing.inventory.objects
    engine.dispose()


def test_what_a_writer_leads_cuts_a_batch_along_scopes() -> None:
    """daemon/led.py, pure: a writer leading p1 writes p1's items and the tick, follows p2's,
    and takes only its clusters' part of a health report or a downtime."""
    from auditd.daemon.items import Downtime, HealthReport
    from auditd.daemon.led import Led

    led = Led(Scopes.of(CONFIG), frozenset({P1}))
    a1 = ObjectEvent("a1", "PersistentVolumeClaim", "ADDED", _obj("x"), T)
    b1 = ObjectEvent("b1", "PersistentVolumeClaim", "ADDED", _obj("y"), T)
    health = HealthReport(T, [{"cluster": "a2"}, {"cluster": "b2"}, {"cluster": "lone"}])
    down = Downtime(["a1", "b1", "lone"], T, T + timedelta(minutes=5))
    mine, theirs = led.split([a1, b1, Tick(T), health, down])
    assert theirs == [b1]
    assert mine[:2] == [a1, Tick(T)]
    assert mine[2] == HealthReport(T, [{"cluster": "a2"}])
    assert mine[3] == Downtime(["a1"], T, T + timedelta(minutes=5))
    assert led.mine("p1", None) and not led.mine("p2", "b1") and not led.mine(None, "lone")
    assert led.followed_clusters() == {"b1", "b2", "lone"}
    everything = led.with_(frozenset(Scopes.of(CONFIG).all))
    assert everything.everything and everything.split([b1]) == ([b1], [])
    assert everything.without(frozenset({P2})).mine("p2", None) is False


def _obj(name: str) -> Observed:
    return Observed("ns", name, f"uid-{name}", "1", {})
