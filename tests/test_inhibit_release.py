"""An alert held back is announced once nothing holds it (issue 12, item 1): inhibition and
silences are decided when a message is due, as in Alertmanager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from outbox_box import Outbox
from sqlalchemy import select

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
            s, [("rule", "secondary-not-replaying")], T, T + timedelta(hours=2), "sre", "drill"
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
