"""How a batch of queued items is dated and cut (pure functions of the items' own times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.daemon.items import SPAN, Tick, by_time, observed_at, observed_span

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_batch_spans_from_its_earliest_to_its_latest_observation_in_any_order() -> None:
    batch = [Tick(AT + timedelta(seconds=s)) for s in (5, 0, 9, 3)]
    assert observed_span(batch) == (AT, AT + timedelta(seconds=9))
    assert observed_span([Tick(AT)]) == (AT, AT)


def test_a_batch_queued_through_an_outage_is_cut_into_runs_no_longer_than_the_span() -> None:
    times = [AT, AT + SPAN / 2, AT + SPAN * 3, AT + SPAN * 3, AT + SPAN * 10]
    runs = by_time([Tick(t) for t in times])
    assert [[observed_at(i) for i in run] for run in runs] == [times[:2], times[2:4], times[4:]]
