"""The one retry policy every sink shares (alerts/notify/retrier.py): pure, on virtual time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.alerts.notify.retrier import Retrier
from auditd.alerts.sinks.base import SendResult
from auditd.config import AlertsConfig

T = datetime(2031, 5, 6, 7, 0, tzinfo=UTC)
FAIL = SendResult(ok=False, error="slack: 503")


def test_backoff_doubles_to_its_cap_with_jitter_and_never_before_retry_after() -> None:
    r = Retrier(AlertsConfig(retry_initial=timedelta(seconds=2), retry_max=timedelta(seconds=30)))
    delays = [r.delay(n, FAIL) for n in range(1, 8)]
    for n, d in enumerate(delays[:4], start=1):
        assert 0.8 * 2 * 2 ** (n - 1) <= d <= 1.2 * 2 * 2 ** (n - 1)
    assert all(d <= 36 for d in delays)  # the cap, jittered
    slow = SendResult(ok=False, error="429", retry_after=120.0)
    assert r.delay(1, slow) == 120.0


def test_permanent_too_old_and_too_many_attempts_are_dead_the_rest_wait() -> None:
    r = Retrier(AlertsConfig(max_attempts=3, give_up_after=timedelta(hours=1)))
    assert r.judge("slack", FAIL, 1, T, T).status == "pending"
    permanent = SendResult(ok=False, error="invalid_auth", permanent=True)
    assert r.judge("slack", permanent, 1, T, T).status == "dead"
    assert r.judge("slack", FAIL, 3, T, T).status == "dead"
    assert r.judge("slack", FAIL, 1, T, T + timedelta(hours=1)).status == "dead"
    waiting = r.judge("slack", FAIL, 2, T, T)
    assert waiting.retry_at is not None and waiting.retry_at > T


def test_a_down_sink_is_rechecked_each_interval_and_its_recovery_says_for_how_long() -> None:
    r = Retrier(AlertsConfig(sink_recheck=timedelta(seconds=15)))
    assert r.due_rechecks(T) == []
    r.judge("slack", FAIL, 1, T, T)
    assert r.due_rechecks(T + timedelta(seconds=10)) == []
    assert r.due_rechecks(T + timedelta(seconds=15)) == ["slack"]
    assert r.due_rechecks(T + timedelta(seconds=20)) == []  # rechecked at 15 s
    back = r.judge("slack", SendResult(ok=True), 2, T, T + timedelta(minutes=3))
    assert (back.status, back.back_after) == ("sent", timedelta(minutes=3))
    again = r.judge("slack", SendResult(ok=True), 1, T, T + timedelta(minutes=4))
    assert again.back_after is None  # it was not down
    r.judge("webhook", FAIL, 1, T, T)
    r.nothing_waits("webhook")
    assert r.due_rechecks(T + timedelta(hours=1)) == []
