"""An alert held back is announced once nothing holds it (issue 12, item 1): inhibition and
silences are decided when a message is due, as in Alertmanager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from outbox_box import Outbox
from sqlalchemy import select

from auditd.alerts.silences import parse_matcher
from auditd.rules.lifecycle import Active
from auditd.rules.model import Finding
from auditd.sim.fakeslack import FakeSlack
from auditd.store.models import NotificationRow
from auditd.store.silence_store import add_silence, expire_silence

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BLIND = Finding(
    "audit-blind-spot", "cluster/dr2", "critical", "auditd cannot watch PVC on dr2", "dr2", "p",
    {"cluster": "dr2"},
)  # fmt: skip


def _box(tmp_path: Path, slack: FakeSlack) -> Outbox:
    return Outbox(tmp_path, slack, group_wait=timedelta(0), group_interval=timedelta(0))


def _blind(box: Outbox, now: datetime, resolve: bool = False) -> None:
    active: Active | None = box.open().get(("audit-blind-spot", "cluster/dr2"))
    box.write(active, None if resolve else BLIND, now)


def _statuses(box: Outbox) -> list[tuple[str, str, str]]:
    with box.sessions() as s:
        return [
            (r.payload.get("labels", {}).get("rule", ""), r.event, r.status)
            for r in s.scalars(
                select(NotificationRow).where(NotificationRow.violation_id.is_not(None))
            )
        ]


def test_a_child_held_back_by_a_blind_spot_is_announced_when_it_ends(
    tmp_path: Path, slack: FakeSlack
) -> None:
    box = _box(tmp_path, slack)
    _blind(box, T)
    box.dispatcher.drain_once(now=T)
    box.fire("img-1", T + timedelta(seconds=5))  # found while dr2 was blind
    box.dispatcher.drain_once(now=T + timedelta(seconds=5))
    assert ("secondary-not-replaying", "firing", "inhibited") in _statuses(box)
    assert [m["text"].split(":")[0] for m in box.posts()] == ["FIRING [critical] audit-blind-spot"]
    # The cluster is back; the child still fires: it is announced, once.
    _blind(box, T + timedelta(minutes=1), resolve=True)
    for i in range(3):
        box.dispatcher.drain_once(now=T + timedelta(minutes=1, seconds=i))
    firing = [m for m in box.posts() if "secondary-not-replaying" in m["text"]]
    assert len(firing) == 1 and firing[0]["text"].startswith("FIRING")
    # And its resolve follows it, in its thread.
    box.resolve("img-1", T + timedelta(minutes=2))
    box.dispatcher.drain_once(now=T + timedelta(minutes=2))
    replies = [m for m in box.posts() if m.get("thread_ts") == firing[0]["ts"]]
    assert replies and replies[-1]["text"].startswith("RESOLVED")
    box.engine.dispose()


def test_a_child_that_ended_while_held_back_stays_quiet(tmp_path: Path, slack: FakeSlack) -> None:
    box = _box(tmp_path, slack)
    _blind(box, T)
    box.fire("img-1", T)
    box.dispatcher.drain_once(now=T)
    box.resolve("img-1", T + timedelta(seconds=30))
    _blind(box, T + timedelta(minutes=1), resolve=True)
    box.dispatcher.drain_once(now=T + timedelta(minutes=1))
    assert not [m for m in box.posts() if "secondary-not-replaying" in m["text"]]
    box.engine.dispose()


def test_an_alert_silenced_is_announced_when_the_silence_ends_if_still_firing(
    tmp_path: Path, slack: FakeSlack
) -> None:
    box = _box(tmp_path, slack)
    with box.sessions.begin() as s:
        silence = add_silence(
            s,
            [parse_matcher("rule=secondary-not-replaying")],
            T,
            T + timedelta(hours=2),
            "sre",
            "drill",
        )
    box.fire("img-1", T)
    box.dispatcher.drain_once(now=T)
    assert ("secondary-not-replaying", "firing", "silenced") in _statuses(box)
    assert box.posts() == []
    with box.sessions.begin() as s:
        expire_silence(s, silence, T + timedelta(minutes=30))
    box.dispatcher.drain_once(now=T + timedelta(minutes=31))
    [post] = box.posts()
    assert post["text"].startswith("FIRING") and "secondary-not-replaying" in post["text"]
    box.engine.dispose()


def test_inhibit_rules_are_config_data_and_replace_the_defaults(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """An Alertmanager-style rule from the config holds back its targets; the two defaults
    (a blind cluster, an unhealthy pool) are gone once rules are set, and [] means none."""
    split = Finding(
        "split-brain", "p/replicapool/img-9", "critical", "both primary", "dr1", "p",
        {"namespace": "app"},
    )  # fmt: skip
    rule = {
        "source_matchers": ['rule="split-brain"', "severity=critical"],
        "target_matchers": ["severity=~warning|info"],
        "equal": ["pair"],
    }
    box = Outbox(
        tmp_path, slack, group_wait=timedelta(0), group_interval=timedelta(0), inhibit_rules=[rule]
    )
    _blind(box, T)
    box.fire("img-1", T)  # dr2 blind, but no rule says a blind spot holds anything back now
    box.dispatcher.drain_once(now=T)
    box.write(None, split, T + timedelta(seconds=10))
    box.fire("img-2", T + timedelta(seconds=10))  # a warning on the pair while it has split brain
    for i in range(3):
        box.dispatcher.drain_once(now=T + timedelta(seconds=10 + i))
    statuses = _statuses(box)
    assert statuses.count(("secondary-not-replaying", "firing", "inhibited")) == 1, statuses
    assert [m for m in box.posts() if "split-brain" in m["text"]], box.posts()
    with box.sessions() as s:
        [held] = s.scalars(select(NotificationRow).where(NotificationRow.status == "inhibited"))
        assert held.payload["labels"]["subject"].endswith("img-2")
        assert "inhibited by split-brain p/replicapool/img-9" in (held.last_error or ""), (
            held.last_error
        )
    box.engine.dispose()

    (tmp_path / "none").mkdir()
    none = Outbox(tmp_path / "none", slack, group_wait=timedelta(0), inhibit_rules=[])
    _blind(none, T)
    none.fire("img-1", T)
    none.dispatcher.drain_once(now=T)
    assert ("secondary-not-replaying", "firing", "inhibited") not in _statuses(none)
    none.engine.dispose()


def test_an_inhibit_rule_reads_as_alertmanagers() -> None:
    """Source and target matchers, `equal` labels set and equal on both, and Alertmanager's
    two-sided rule: an alert that could be a source is not held back by one that could be a
    target (two alerts never hold each other back)."""
    from auditd.alerts.inhibit import Inhibitor, InhibitRule
    from auditd.alerts.labels import NAMES

    warn = {"rule": "rpo-exceeded", "severity": "warning", "pair": "p", "subject": "p/a"}
    crit = {"rule": "split-brain", "severity": "critical", "pair": "p", "subject": "p/b"}
    by_severity = InhibitRule.of(["severity=critical"], ["severity!=critical"], ["pair"], NAMES)
    assert by_severity.inhibits(crit, warn) and not by_severity.inhibits(warn, crit)
    assert not by_severity.inhibits(crit, {**warn, "pair": "q"})  # another pair
    assert not by_severity.inhibits({**crit, "pair": None}, {**warn, "pair": None})  # unset
    assert Inhibitor([by_severity], [warn, crit]).held_by(warn) == crit
    # Any rule holds any other back; the two-sided rule keeps two equals from holding each other.
    mutual = InhibitRule.of(["rule=~.+"], ["rule=~.+"], ["pair"], NAMES)
    assert not mutual.inhibits(crit, warn) and not mutual.inhibits(warn, crit)
    assert Inhibitor([mutual], [crit]).held_by(crit) is None  # never itself
