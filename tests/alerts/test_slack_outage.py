"""A Slack outage delays alerts, never loses them (issue 12, item 5): transient failures retry
for as long as alerts.give_up_after; the sink's return is noticed within alerts.sink_recheck and
everything waiting goes at once, in order, each message saying how late it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from outbox_box import Outbox
from sqlalchemy import func, select

from auditd.sim.fakeslack import FakeSlack
from auditd.store.models import NotificationRow

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_slack_down_an_hour_then_every_alert_within_30s_none_twice_none_dead(
    tmp_path: Path, slack: FakeSlack
) -> None:
    # One incident per alert, so that each alert is a message of its own.
    box = Outbox(
        tmp_path, slack, group_by=["subject"], group_wait=timedelta(0), group_interval=timedelta(0)
    )
    slack.fail_next(100_000, status=503)  # down
    now = T
    fired = 0
    while now < T + timedelta(hours=1):
        if fired < 6 and now >= T + timedelta(minutes=10 * fired):
            box.fire(f"img-{fired}", now)
            fired += 1
        box.dispatcher.drain_once(now=now)
        now += timedelta(seconds=5)
    assert box.posts() == []
    attempts_while_down = len(slack.calls)
    # Not a retry storm: one recheck per sink_recheck (15 s) plus each message's own capped
    # backoff (about 15 tries an hour each), whatever the backlog.
    assert attempts_while_down <= 3600 / 15 + 6 * 16, attempts_while_down
    slack.recover()
    up = now
    while now < up + timedelta(seconds=30):
        box.dispatcher.drain_once(now=now)
        now += timedelta(seconds=5)
    texts = [m["text"] for m in box.posts()]
    assert len(texts) == 6 and len(set(texts)) == 6, texts
    assert all("late (the sink was unreachable)" in t for t in texts[:5]), texts
    with box.sessions() as s:
        by_status = dict(
            s.execute(
                select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
            ).all()
        )
    assert "dead" not in by_status and "pending" not in by_status, by_status
    box.engine.dispose()


def test_a_permanent_error_dead_letters_at_once_and_give_up_after_ends_retries(
    tmp_path: Path, slack: FakeSlack
) -> None:
    box = Outbox(tmp_path, slack, group_wait=timedelta(0), give_up_after=timedelta(hours=1))
    slack.fail_next(100_000, status=503)
    box.fire("img-1", T)
    now = T
    while now < T + timedelta(hours=1, minutes=10):
        box.dispatcher.drain_once(now=now)
        now += timedelta(seconds=30)
    with box.sessions() as s:
        [dead] = s.scalars(select(NotificationRow).where(NotificationRow.status == "dead")).all()
    assert dead.created_at.replace(tzinfo=UTC) == T or dead.created_at == T
    box.engine.dispose()


def test_a_reply_killed_in_flight_is_found_in_its_thread_not_posted_twice(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """Crash safety covers replies (issue 12, item 6): real Slack's conversations.history has
    no thread replies, so a reply is looked for in its thread; and the parent message is still
    edited to the incident's final state."""
    box = Outbox(tmp_path, slack, group_wait=timedelta(0), group_interval=timedelta(0))
    box.fire("img-1", T)
    box.dispatcher.drain_once(now=T)
    [parent] = box.posts()
    box.resolve("img-1", T + timedelta(minutes=1))
    real = box.sinks["slack"]

    class DiesAfterSlackAccepted:
        name, grouped, refresher = "slack", True, None

        def find_sent(self, key: str, parent: str | None = None) -> str | None:
            return real.find_sent(key, parent)

        def completed(self, payload: dict[str, object], parent: str | None) -> None:
            real.completed(payload, parent)

        def send(self, payload: dict[str, object], key: str, parent: str | None = None) -> object:
            slack.fail_next(method="chat.update", error="internal_error")  # no edit either
            real.send(payload, key, parent)
            raise KeyboardInterrupt  # kill -9 between Slack's answer and our commit

    box.deliver_to({"slack": DiesAfterSlackAccepted()})
    try:
        box.dispatcher.drain_once(now=T + timedelta(minutes=1))
    except KeyboardInterrupt:
        pass
    assert len(box.posts()) == 2 and not parent.get("edited")
    # The restart: the reply is found in the thread; the parent gets its final edit.
    box.new_dispatcher().drain_once(now=T + timedelta(minutes=2))
    posts = box.posts()
    assert len(posts) == 2, [m["text"] for m in posts]
    assert posts[1]["thread_ts"] == parent["ts"] and posts[1]["text"].startswith("RESOLVED")
    assert posts[0]["edited"] and posts[0]["text"].startswith("RESOLVED")
    with box.sessions() as s:
        left = select(NotificationRow).where(NotificationRow.status.not_in(("sent", "grouped")))
        assert not s.scalars(left).all()
    box.engine.dispose()
