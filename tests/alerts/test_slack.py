"""The Slack sink and the outbox dispatcher, against the fake Slack API with the real slack-sdk."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from auditd import logs
from auditd.alerts.message import Words
from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.slack import SlackSink
from auditd.clock import ManualClock
from auditd.config import AlertsConfig
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.sim.fakeslack import FakeSlack
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow
from auditd.store.writer import PlannedNotification, write_change

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# A message as rows from before schema 2 hold it: already in words.
PAYLOAD = {
    "text": "FIRING pvc-on-secondary",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}}],
}
WORDS = Words.from_json(PAYLOAD)


def sink_for(
    slack: FakeSlack, token: str | None = None, channel: str = "#dr-alerts", timeout: float = 5
) -> SlackSink:
    return SlackSink(SecretStr(token or slack.token), channel, slack.base_url, timeout)


def test_post_message(slack: FakeSlack) -> None:
    result = sink_for(slack).send(WORDS, "auditd-notification-1")
    assert result.ok and result.external_id == slack.messages[0]["ts"]
    assert (
        slack.messages[0]["text"] == PAYLOAD["text"]
        and slack.messages[0]["blocks"] == PAYLOAD["blocks"]
    )


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found"])
def test_permanent_errors(slack: FakeSlack, error: str) -> None:
    sink = (
        sink_for(slack, token="xoxb-wrong")
        if error == "invalid_auth"
        else sink_for(slack, channel="#nope")
    )
    result = sink.send(WORDS, "auditd-notification-1")
    assert not result.ok and result.permanent and result.error == f"slack: {error}"


def test_transient_errors(slack: FakeSlack) -> None:
    slack.fail_next(status=429, retry_after=7)
    r = sink_for(slack).send(WORDS, "auditd-notification-1")
    assert not r.ok and not r.permanent and r.retry_after == 7
    slack.fail_next(status=500)
    r = sink_for(slack).send(WORDS, "auditd-notification-1")
    assert not r.ok and not r.permanent
    slack.fail_next(delay=2)
    r = sink_for(slack, timeout=1).send(WORDS, "auditd-notification-1")
    assert not r.ok and not r.permanent and "unreachable" in (r.error or "")
    dead = FakeSlack().start()
    url = dead.base_url
    dead.stop()
    r = SlackSink(SecretStr("xoxb-x"), "#dr-alerts", url, 2).send(WORDS, "auditd-notification-1")
    assert not r.ok and not r.permanent


@pytest.fixture
def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'o.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    change = step(
        None, Finding("pvc-on-secondary", "dr2/x", "warning", "s", "dr2", None, {}), timedelta(0), T
    )
    assert change is not None
    with sessions.begin() as s:
        write_change(s, change, [PlannedNotification("slack", PAYLOAD)], T)
    yield sessions
    engine.dispose()


def _row(sessions) -> NotificationRow:  # type: ignore[no-untyped-def]
    """The incident's message: what the outbox delivers for the one alert in the fixture."""
    with sessions() as s:
        return s.scalars(  # type: ignore[no-any-return]
            select(NotificationRow).where(NotificationRow.violation_id.is_(None))
        ).one()


def alerts_config(**kw: Any) -> AlertsConfig:
    return AlertsConfig(group_wait=timedelta(0), **kw)


def test_dispatcher_retries_then_sends(slack: FakeSlack, outbox) -> None:  # type: ignore[no-untyped-def]
    # Every time here is the test's own: the dispatcher reads nothing but its clock.
    d = Dispatcher(
        outbox,
        {"slack": sink_for(slack)},
        alerts_config(retry_initial=timedelta(seconds=10)),
        clock=ManualClock(T),
    )
    slack.fail_next(status=429, retry_after=30)
    assert d.drain_once() == 0
    row = _row(outbox)
    assert row.status == "pending" and row.attempts == 1 and "ratelimited" in (row.last_error or "")
    assert row.next_attempt_at >= T + timedelta(seconds=29)  # Retry-After honoured
    assert d.drain_once(now=T + timedelta(seconds=1)) == 0  # not due yet: no call
    assert len(slack.calls) == 1
    assert d.drain_once(now=row.next_attempt_at) == 1
    row = _row(outbox)
    assert row.status == "sent" and row.attempts == 2 and row.external_id == slack.messages[0]["ts"]


def test_dispatcher_dead_letters_permanent_errors_without_retry_storm(
    slack: FakeSlack, outbox
) -> None:  # type: ignore[no-untyped-def]
    d = Dispatcher(outbox, {"slack": sink_for(slack, token="xoxb-revoked")}, alerts_config())
    d.drain_once(now=T)
    d.drain_once(now=T + timedelta(hours=1))
    row = _row(outbox)
    assert row.status == "dead" and row.attempts == 1 and row.last_error == "slack: invalid_auth"
    assert len(slack.calls) == 1


def test_dispatcher_dead_letters_after_max_attempts(slack: FakeSlack, outbox) -> None:  # type: ignore[no-untyped-def]
    d = Dispatcher(
        outbox,
        {"slack": sink_for(slack)},
        alerts_config(max_attempts=3, retry_initial=timedelta(0)),
    )
    slack.fail_next(5, status=503)
    for i in range(5):
        d.drain_once(now=T + timedelta(seconds=i))
    row = _row(outbox)
    assert row.status == "dead" and row.attempts == 3
    assert len(slack.calls) == 3


def test_token_never_appears_in_logs(
    slack: FakeSlack, outbox, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    token = "xoxb-1234-secret-value-abcdef"
    logs.register_secret(token)
    logging.getLogger("slack_sdk").setLevel(logging.DEBUG)  # the worst case: library debug logs on
    caplog.set_level(logging.DEBUG)
    d = Dispatcher(
        outbox,
        {"slack": SlackSink(SecretStr(token), "#dr-alerts", slack.base_url, 5)},
        alerts_config(),
    )
    d.drain_once(now=T)
    formatted = "\n".join(logs._Text().format(r) for r in caplog.records)
    assert token not in formatted
    assert token not in repr(_row(outbox).last_error)
    assert "Bearer **********" in logs.scrub(f"Authorization: Bearer {token}")


def test_message_carries_its_key_and_can_be_found_again(slack: FakeSlack) -> None:
    sink = sink_for(slack)
    assert sink.find_sent("auditd-notification-7") is None
    r = sink.send(WORDS, "auditd-notification-7")
    assert slack.messages[0]["metadata"] == {
        "event_type": "auditd_notification",
        "event_payload": {"key": "auditd-notification-7"},
    }
    assert sink.find_sent("auditd-notification-7") == r.external_id
    assert sink.find_sent("auditd-notification-8") is None
