"""Grouping, as in Alertmanager: alerts with equal ``group_by`` labels form one incident.

An incident gets one message and one thread. Its first message waits ``group_wait`` for more
alerts; after that, changes (members added, resolved, severity changed) are announced at most
every ``group_interval``; an incident still firing with nothing new is recalled every
``repeat_interval``. Pure decisions here; the outbox keeps the state in the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from auditd.alerts.message import Alert

Event = Literal["firing", "update", "resolved", "repeat", "drop"]

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Timing:
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


@dataclass(frozen=True)
class Member:
    """One violation in an incident, as its latest alert describes it."""

    violation_id: int
    state: str  # firing | resolved
    severity: str
    alert: Alert


def group_labels(labels: Mapping[str, Any], group_by: Iterable[str]) -> dict[str, str]:
    return {k: str(labels.get(k) or "") for k in group_by}


def group_key(labels: Mapping[str, Any], group_by: Iterable[str]) -> str:
    """A stable key: the group_by labels in order (missing labels are empty, and group too)."""
    return ",".join(f"{k}={v}" for k, v in group_labels(labels, group_by).items())


def snapshot(members: Iterable[Member]) -> dict[str, list[str]]:
    """What a message says about its members; stored so the next decision knows what changed.
    JSON object keys are strings, hence str(violation_id)."""
    return {str(m.violation_id): [m.state, m.severity] for m in members}


def decide(
    opened_at: datetime,
    last_flush_at: datetime | None,
    announced: Mapping[str, list[str]],
    members: list[Member],
    now: datetime,
    timing: Timing,
) -> Event | None:
    """Which message (if any) the incident owes its channel now."""
    if not members:
        return None
    all_resolved = all(m.state == "resolved" for m in members)
    if last_flush_at is None:
        if all_resolved:
            return "drop"  # over before anyone was told: nothing to say (as Alertmanager)
        return "firing" if now >= opened_at + timing.group_wait else None
    changed = snapshot(members) != {k: list(v) for k, v in announced.items()}
    if changed:
        if now < last_flush_at + timing.group_interval:
            return None
        return "resolved" if all_resolved else "update"
    if not all_resolved and now >= last_flush_at + timing.repeat_interval:
        return "repeat"
    return None


def worst_severity(members: Iterable[Member]) -> str:
    return max((m.severity for m in members), key=lambda s: SEVERITY_ORDER.get(s, -1))


@dataclass(frozen=True)
class Diff:
    added: list[Member]
    resolved: list[Member]
    changed_severity: list[tuple[Member, str]]  # (member now, severity announced before)


def diff(announced: Mapping[str, list[str]], members: list[Member]) -> Diff:
    added, resolved, sev = [], [], []
    for m in members:
        before = announced.get(str(m.violation_id))
        if m.state == "resolved":
            if before is None or before[0] != "resolved":
                resolved.append(m)
        elif before is None or before[0] == "resolved":
            added.append(m)
        elif before[1] != m.severity:
            sev.append((m, before[1]))
    return Diff(added, resolved, sev)
