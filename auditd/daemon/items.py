"""What the ingest writer takes in, and what can be said of one item without any state: when
it was observed, how it is cut in runs or halves, what stands in for it when it cannot be taken
in, and how it is named in a log line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from auditd.sources.kube.events import KubeEvent, ObjectEvent, SnapshotPage
from auditd.sources.rbd.probe import ProbeResult
from auditd.sources.rbd.transport import ProbeFailure
from auditd.sources.text import storable


@dataclass(frozen=True)
class Tick:
    """Time passed: pending violations may be due to fire."""

    at: datetime


@dataclass(frozen=True)
class HealthReport:
    """A sample of every watch stream's health (``StreamHealth.snapshot()`` dicts)."""

    at: datetime
    streams: list[dict[str, Any]]


@dataclass(frozen=True)
class Downtime:
    """auditd was not running between its last heartbeat and this start (put at every start
    that finds a history: even a short downtime leaves the stored storage evidence stale)."""

    clusters: list[str]
    down_at: datetime
    up_at: datetime


Item = KubeEvent | Tick | HealthReport | ProbeResult | Downtime


# A batch is dated by when it was observed (its latest item). Items queued during a database
# outage span much longer than a normal batch: they are written in runs no longer than this, so
# that a violation is dated within this of the change that caused it.
SPAN = timedelta(seconds=1)


def by_time(batch: Sequence[Item]) -> list[Sequence[Item]]:
    """The batch cut, in order, into runs of items observed within ``SPAN`` of each other."""
    first = observed_at(batch[0])
    out: list[Sequence[Item]] = []
    start = 0
    for i, item in enumerate(batch):
        at = observed_at(item)
        if at - first > SPAN:
            out.append(batch[start:i])
            start, first = i, at
    out.append(batch[start:])
    return out


def observed_span(batch: Sequence[Item]) -> tuple[datetime, datetime]:
    """The earliest and the latest observation in a non-empty batch, in one pass."""
    first = last = observed_at(batch[0])
    for item in batch:
        at = observed_at(item)
        if at < first:
            first = at
        elif at > last:
            last = at
    return first, last


def observed_at(item: Item) -> datetime:
    """When the source saw this item (what its transitions and verdicts are dated by)."""
    if type(item) is ObjectEvent:  # nearly every item: asked twice each, per batch
        return item.received_at
    if isinstance(item, Downtime):
        return item.up_at
    if isinstance(item, Tick | HealthReport | ProbeResult):
        return item.at
    return item.received_at


def halves(item: Item) -> tuple[Item, Item] | None:
    """A list page of several objects, as two pages."""
    if not isinstance(item, SnapshotPage) or len(item.objects) < 2:
        return None
    mid = len(item.objects) // 2
    return replace(item, objects=item.objects[:mid]), replace(item, objects=item.objects[mid:])


def quarantined(item: Item, reason: str) -> Item | None:
    """The item as the pipeline can still take it: an object that exists but whose facts are
    not known (the inventory keeps its last good state and records the quarantine), or a probe
    that failed. None for an item with nothing to stand in for it."""
    why = storable(reason)[:300]
    if isinstance(item, ObjectEvent) and item.type != "DELETED":
        return replace(item, object=replace(item.object, facts={}, problem=why))
    if isinstance(item, SnapshotPage) and len(item.objects) == 1:
        return replace(item, objects=[replace(item.objects[0], facts={}, problem=why)])
    if isinstance(item, ProbeResult) and item.failure is None:
        failure = ProbeFailure("unusable", f"its output cannot be recorded: {why}")
        return replace(item, status=None, info=None, schedules=[], failure=failure)
    return None


def describe_item(item: Item) -> str:
    if isinstance(item, ObjectEvent):
        o = item.object
        ns = f"{o.namespace}/" if o.namespace else ""
        return f"{item.type} {item.cluster}/{item.kind}/{ns}{o.name} rv {o.resource_version}"
    if isinstance(item, SnapshotPage):
        return f"list page of {len(item.objects)} {item.kind} on {item.cluster}"
    if isinstance(item, ProbeResult):
        return f"{item.kind} probe of {item.cluster}/{item.pool}"
    return type(item).__name__
