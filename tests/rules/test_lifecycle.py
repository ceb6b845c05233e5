from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.rules.lifecycle import due, step
from auditd.rules.model import Finding

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
F = Finding("r", "s", "warning", "summary", "dr2", "p", {"k": "v"})


def test_for_zero_fires_at_once_and_resolves() -> None:
    c = step(None, F, timedelta(0), T)
    assert c is not None and c.violation.state == "firing" and c.notify and c.previous is None
    assert (
        step(c.violation, F, timedelta(0), T + timedelta(seconds=5)) is None
    )  # still firing: quiet
    r = step(c.violation, None, timedelta(0), T + timedelta(seconds=9))
    assert r is not None and r.violation.state == "resolved" and r.notify
    assert r.violation.resolved_at == T + timedelta(seconds=9)


def test_pending_until_for_duration_then_fires_by_timer() -> None:
    c = step(None, F, timedelta(minutes=2), T)
    assert c is not None and c.violation.state == "pending" and not c.notify
    assert due(c.violation, timedelta(minutes=2), T + timedelta(minutes=1)) is None
    fired = due(c.violation, timedelta(minutes=2), T + timedelta(minutes=2))
    assert fired is not None and fired.violation.state == "firing" and fired.notify


def test_pending_that_clears_is_inactive_and_silent() -> None:
    c = step(None, F, timedelta(minutes=2), T)
    assert c is not None
    r = step(c.violation, None, timedelta(minutes=2), T + timedelta(seconds=30))
    assert r is not None and r.violation.state == "inactive" and not r.notify


def test_nothing_to_nothing() -> None:
    assert step(None, None, timedelta(0), T) is None


def test_a_pending_violation_fires_with_what_it_is_now_not_what_it_first_was() -> None:
    # k8s-objects-on-both: first "PVC on both", then the VR too, before the 2m are up.
    first = Finding("k8s-objects-on-both", "s", "warning", "PVC for image x on both", None, "p", {})
    later = Finding(
        "k8s-objects-on-both", "s", "warning", "PVC and VolumeReplication for image x on both",
        None, "p", {"both": "PVC, VR"},
    )  # fmt: skip
    c = step(None, first, timedelta(minutes=2), T)
    assert c is not None
    grew = step(c.violation, later, timedelta(minutes=2), T + timedelta(minutes=1))
    assert grew is not None and not grew.notify and grew.violation.summary == later.summary
    fired = step(grew.violation, later, timedelta(minutes=2), T + timedelta(minutes=2))
    assert fired is not None and fired.notify and fired.violation.summary == later.summary
    assert fired.violation.evidence == {"both": "PVC, VR"}
