"""Per-pair leadership inside the ingest writer: it writes the pairs it leads, follows the
others in memory (kept warm through a reload), and takes a pair over by reconciling it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import history
from sqlalchemy import select

from auditd.config import parse_config
from auditd.daemon.ingest import Ingestor, Tick
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
