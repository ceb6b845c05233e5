"""Grouping: alerts with equal group_by labels are one incident, one message, one thread.

The pure decisions first, then the outbox against the fake Slack API (real slack-sdk, real
SQLite), driving virtual time through ``drain_once(now=...)``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from outbox_box import Outbox
from pydantic import SecretStr
from sqlalchemy import select

from auditd.alerts.grouping import Member, Timing, decide, diff, group_key, snapshot
from auditd.alerts.message import Alert, Message
from auditd.alerts.render_group import words
from auditd.alerts.sinks.http import WebhookSink
from auditd.config import ConfigError, parse_config
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.sim.fakeslack import FakeSlack
from auditd.store.models import AlertGroupRow, NotificationRow
from auditd.store.writer import PlannedNotification, write_change

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TIMING = Timing(timedelta(seconds=30), timedelta(minutes=5), timedelta(hours=4))


def m(vid: int, state: str = "firing", severity: str = "warning") -> Member:
    alert = Alert(state, "r", f"s{vid}", severity, "", {})
    return Member(vid, state, severity, alert)


def test_group_key_uses_the_group_by_labels_in_order() -> None:
    labels = {"rule": "r", "pair": "p", "cluster": "dr2", "subject": "s"}
    assert group_key(labels, ["pair", "rule"]) == "pair=p,rule=r"
    assert group_key(labels, ["namespace"]) == "namespace="  # missing labels group together


def test_decide_waits_then_batches_then_reminds() -> None:
    # A new incident waits group_wait for its siblings.
    assert decide(T, None, {}, [m(1)], T + timedelta(seconds=29), TIMING) is None
    assert decide(T, None, {}, [m(1)], T + timedelta(seconds=30), TIMING) == "firing"
    # Over before anyone was told: nothing is said.
    assert decide(T, None, {}, [m(1, "resolved")], T + timedelta(minutes=1), TIMING) == "drop"
    told = snapshot([m(1)])
    flushed = T + timedelta(seconds=30)
    # A change waits for group_interval; no change stays quiet until repeat_interval.
    grown = [m(1), m(2)]
    assert decide(T, flushed, told, grown, flushed + timedelta(minutes=4), TIMING) is None
    assert decide(T, flushed, told, grown, flushed + timedelta(minutes=5), TIMING) == "update"
    assert decide(T, flushed, told, [m(1)], flushed + timedelta(hours=3), TIMING) is None
    assert decide(T, flushed, told, [m(1)], flushed + timedelta(hours=4), TIMING) == "repeat"
    # Escalation is a change; all resolved is the incident's end.
    assert decide(
        T, flushed, told, [m(1, severity="critical")], T + timedelta(hours=1), TIMING
    ) == ("update")
    assert decide(T, flushed, told, [m(1, "resolved")], T + timedelta(hours=1), TIMING) == (
        "resolved"
    )


def test_diff_names_what_changed() -> None:
    told = snapshot([m(1), m(2), m(3)])
    d = diff(told, [m(1, "resolved"), m(2, severity="critical"), m(3), m(4)])
    assert [x.violation_id for x in d.added] == [4]
    assert [x.violation_id for x in d.resolved] == [1]
    assert [(x.violation_id, old) for x, old in d.changed_severity] == [(2, "warning")]


@pytest.fixture
def box(tmp_path: Path, slack: FakeSlack) -> Any:
    b = Outbox(
        tmp_path,
        slack,
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
    )
    yield b
    b.engine.dispose()


def test_an_incident_is_one_message_and_one_thread_across_restarts(box: Outbox) -> None:
    box.fire("img-1", T)
    box.fire("img-2", T + timedelta(seconds=5))
    assert box.dispatcher.drain_once(now=T + timedelta(seconds=10)) == 0  # group_wait
    assert box.dispatcher.drain_once(now=T + timedelta(seconds=30)) == 1
    [first] = box.posts()
    assert first["text"].startswith("FIRING [warning] secondary-not-replaying: 2 volumes")
    assert first["thread_ts"] is None

    # A restart in the middle changes nothing: all of the state is in the database.
    box.dispatcher = box.new_dispatcher()
    box.fire("img-3", T + timedelta(minutes=1))
    assert box.dispatcher.drain_once(now=T + timedelta(minutes=2)) == 0  # group_interval
    assert box.dispatcher.drain_once(now=T + timedelta(minutes=5, seconds=30)) == 1
    update = box.posts()[1]
    assert update["thread_ts"] == first["ts"]
    assert update["text"] == "UPDATE: 1 more firing. Now 3 of 3 firing."
    assert box.posts()[0]["edited"] and "3 of 3 volumes firing" in str(box.posts()[0]["blocks"])

    # Escalation is re-announced in the thread.
    box.fire("img-2", T + timedelta(minutes=20), severity="critical")
    assert box.dispatcher.drain_once(now=T + timedelta(minutes=20)) == 1
    assert "warning -> critical" in box.posts()[2]["text"]
    assert box.posts()[0]["text"].startswith("FIRING [critical]")

    # Nothing new for repeat_interval: a reminder in the thread, the parent untouched.
    updates = sum(c[0] == "chat.update" for c in box.slack.calls)
    assert box.dispatcher.drain_once(now=T + timedelta(hours=4, minutes=20)) == 1
    assert box.posts()[3]["text"].startswith("Still firing: 3 of 3")
    assert sum(c[0] == "chat.update" for c in box.slack.calls) == updates

    for image in ("img-1", "img-2", "img-3"):
        box.resolve(image, T + timedelta(hours=5))
    assert box.dispatcher.drain_once(now=T + timedelta(hours=5)) == 1
    resolved = box.posts()[4]
    assert resolved["thread_ts"] == first["ts"]
    assert resolved["text"].startswith("RESOLVED secondary-not-replaying: all 3 volumes")
    assert "5h" in resolved["text"]  # first firing to last resolve
    assert box.posts()[0]["text"].startswith("RESOLVED")
    with box.sessions() as s:
        group = s.scalars(select(AlertGroupRow)).one()
    assert group.closed_at is not None

    # The next firing is a new incident: a new top-level message.
    box.fire("img-1", T + timedelta(hours=6))
    box.dispatcher.drain_once(now=T + timedelta(hours=6, seconds=30))
    assert box.posts()[5]["thread_ts"] is None and len(box.posts()) == 6


def test_one_violation_incident_reads_like_its_alert(box: Outbox) -> None:
    box.fire("img-1", T)
    box.dispatcher.drain_once(now=T + timedelta(seconds=30))
    [first] = box.posts()
    assert first["text"].startswith("FIRING [warning] secondary-not-replaying: img-1 is not")
    assert "Verify" in str(first["blocks"])
    box.resolve("img-1", T + timedelta(minutes=10))
    box.dispatcher.drain_once(now=T + timedelta(minutes=10))
    assert box.posts()[1]["text"].startswith("RESOLVED [warning] secondary-not-replaying")
    assert box.posts()[1]["thread_ts"] == first["ts"]


def test_an_incident_over_within_group_wait_says_nothing(box: Outbox) -> None:
    box.fire("img-1", T)
    box.dispatcher.drain_once(now=T + timedelta(seconds=1))
    box.resolve("img-1", T + timedelta(seconds=10))
    box.dispatcher.drain_once(now=T + timedelta(minutes=1))
    assert box.posts() == []
    with box.sessions() as s:
        assert s.scalars(select(AlertGroupRow)).one().closed_at is not None
        assert {n.status for n in s.scalars(select(NotificationRow))} == {"grouped"}


def test_group_by_subject_is_one_incident_per_violation(tmp_path: Path, slack: FakeSlack) -> None:
    box = Outbox(tmp_path, slack, group_by=["subject"], group_wait=timedelta(0))
    box.fire("img-1", T)
    box.fire("img-2", T)
    assert box.dispatcher.drain_once(now=T) == 2
    assert all("secondary-not-replaying: img-" in p["text"] for p in box.posts())
    box.engine.dispose()


def test_machine_sinks_get_every_alert_on_its_own(tmp_path: Path, slack: FakeSlack) -> None:
    """Alertmanager and webhooks group (and route) by themselves: never folded here."""
    box = Outbox(tmp_path, slack, group_wait=timedelta(0))
    received: list[Message] = []

    class Recorder(WebhookSink):
        def send(self, message: Message, key: str, parent: str | None = None) -> Any:
            received.append(message)
            return super().send(message, key, parent)

    box.deliver_to({"webhook": Recorder(SecretStr(slack.base_url + "webhook"), 5)})
    change = step(
        None,
        Finding("secondary-not-replaying", "s1", "warning", "x", "dr2", "p", {}),
        timedelta(0),
        T,
    )
    assert change is not None
    for subject in ("s1", "s2"):
        v = replace(change.violation, subject=subject)
        with box.sessions.begin() as s:
            write_change(
                s,
                replace(change, violation=v),
                [PlannedNotification("webhook", Alert.of(v, "").to_json())],
                T,
            )
    box.dispatcher.drain_once(now=T)
    assert sorted(m.subject for m in received if isinstance(m, Alert)) == ["s1", "s2"]
    box.engine.dispose()


def test_group_by_must_name_known_labels() -> None:
    with pytest.raises(ConfigError, match="group_by"):
        parse_config({"alerts": {"group_by": ["volume"]}})
    with pytest.raises(ConfigError, match="at least one"):
        parse_config({"alerts": {"group_by": []}})


def test_an_incident_that_cannot_be_rendered_holds_back_no_other(
    box: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    # A malformed alert (a time no version writes) in its own incident...
    odd = step(None, Finding("split-brain", "p/x", "critical", "s", None, "p", {}), timedelta(0), T)
    assert odd is not None
    with box.sessions.begin() as s:
        write_change(
            s,
            odd,
            [
                PlannedNotification(
                    "slack",
                    {"v": 2, "labels": {"rule": "split-brain", "pair": "p"}, "fired_at": "noon"},
                )
            ],
            T,
        )
    box.fire("img-1", T)  # ...and a good one
    assert box.dispatcher.drain_once(now=T + timedelta(seconds=30)) == 1
    assert box.posts()[0]["text"].startswith("FIRING [warning] secondary-not-replaying")
    assert "cannot describe incident" in caplog.text


def test_a_sink_that_raises_dead_letters_that_message_and_delivers_the_rest(
    tmp_path: Path, slack: FakeSlack
) -> None:
    box = Outbox(tmp_path, slack, group_by=["subject"], group_wait=timedelta(0))
    real = box.sinks["slack"]

    class Flaky:
        name, grouped, refresher = "slack", True, None

        def find_sent(self, key: str, parent: str | None = None) -> str | None:
            return None

        def completed(self, message: Message, parent: str | None) -> None:
            pass

        def send(self, message: Message, key: str, parent: str | None = None) -> Any:
            if "img-1" in words(message).text:
                raise RuntimeError("a bug in a sink")
            return real.send(message, key, parent)

    box.deliver_to({"slack": Flaky()})
    box.fire("img-1", T)
    box.fire("img-2", T)
    assert box.dispatcher.drain_once(now=T) == 1
    assert "img-2" in box.posts()[0]["text"]
    with box.sessions() as s:
        dead = s.scalars(select(NotificationRow).where(NotificationRow.status == "dead")).one()
    assert dead.last_error == "slack: RuntimeError" and dead.attempts == 1
    box.engine.dispose()


def test_a_resolve_never_overtakes_a_firing_that_waits_for_its_retry(box: Outbox) -> None:
    box.slack.fail_next(status=429, retry_after=60)
    box.fire("img-1", T)
    now = T + timedelta(seconds=30)  # the pass that failed: its retry is due 60 s later
    box.dispatcher.drain_once(now=now)
    assert box.posts() == []
    box.resolve("img-1", T + timedelta(minutes=1))
    box.dispatcher.drain_once(now=now + timedelta(seconds=10))
    assert box.posts() == []  # the resolve waits behind its firing
    box.dispatcher.drain_once(now=now + timedelta(minutes=10))
    first, reply = box.posts()
    # The firing went first (its message is the parent, since edited to the resolved state),
    # the resolve is its reply.
    assert reply["thread_ts"] == first["ts"] and reply["text"].startswith("RESOLVED")
    assert first["edited"] and first.get("thread_ts") is None


def test_a_backlog_on_a_broken_sink_does_not_crowd_out_the_others(
    tmp_path: Path, slack: FakeSlack
) -> None:
    box = Outbox(tmp_path, slack, group_by=["subject"], group_wait=timedelta(0))
    later = T + timedelta(hours=1)
    for i in range(600):  # a webhook that has been failing: every row waits for its retry
        change = step(
            None,
            Finding("pvc-on-secondary", f"s{i}", "warning", "x", "dr2", "p", {}),
            timedelta(0),
            T,
        )
        assert change is not None
        with box.sessions.begin() as s:
            write_change(s, change, [PlannedNotification("webhook", {"text": "x"})], T)
            s.execute(
                NotificationRow.__table__.update()
                .where(NotificationRow.sink == "webhook")
                .values(next_attempt_at=later)
            )
    box.deliver_to({**box.sinks, "webhook": WebhookSink(SecretStr("http://127.0.0.1:9/"), 1)})
    box.fire("img-1", T)
    assert box.dispatcher.drain_once(now=T) == 1
    assert "img-1" in box.posts()[0]["text"]
    box.engine.dispose()
