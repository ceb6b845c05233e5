"""What an incident owes its channel, as data: counts, the first few members, what changed
since its last message (pure; the flush stage stores it, each sink words it at delivery)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from auditd.alerts.grouping import Diff, Event, Member, worst_severity
from auditd.alerts.message import Incident, Line, Listed

LIST_LIMIT = 10


def _listed(members: Iterable[Member]) -> Listed:
    ms = list(members)
    return Listed(tuple(Line(m.alert.subject, m.alert.summary) for m in ms[:LIST_LIMIT]), len(ms))


def _lasted(members: list[Member], opened_at: datetime, now: datetime) -> timedelta:
    """First firing to last resolve."""
    start = min((t for m in members if (t := m.alert.fired_at)), default=opened_at)
    end = max((t for m in members if (t := m.alert.resolved_at)), default=now)
    return end - start


def noun(rule: str) -> str:
    """What one member of an incident of this rule is."""
    if rule.startswith("pool-"):
        return "pools"
    return "clusters" if rule == "audit-blind-spot" else "volumes"


def _rule(labels: Mapping[str, str], members: list[Member]) -> str:
    return labels.get("rule") or ", ".join(sorted({m.alert.rule for m in members}))


def _where(members: list[Member]) -> str:
    parts = []
    for key in ("pair", "cluster", "namespace"):
        values = sorted({str(m.alert.labels.get(key) or "") for m in members} - {""})
        if len(values) == 1:
            parts.append(f"{key} {values[0]}")
        elif values:
            parts.append(f"{len(values)} {key}s")
    return " / ".join(parts) or "-"


def incident(
    event: Event,
    labels: Mapping[str, str],
    members: list[Member],
    change: Diff,
    opened_at: datetime,
    now: datetime,
) -> Incident:
    firing = [m for m in members if m.state == "firing"]
    rule = _rule(labels, members)
    severity = worst_severity(firing or members)
    return Incident(
        event=event,
        rule=rule,
        severity=severity,
        labels={**labels, "severity": severity},
        where=_where(members),
        noun=noun(rule),
        members=len(members),
        firing=_listed(firing),
        opened_at=opened_at,
        lasted=None if firing else _lasted(members, opened_at, now),
        added=_listed(change.added),
        resolved=_listed(change.resolved),
        severity_changes=tuple(
            (m.alert.subject, old, m.severity) for m, old in change.changed_severity[:LIST_LIMIT]
        ),
        verify=next((m.alert.verify for m in firing if m.alert.verify), ""),
        alone=members[0].alert if len(members) == 1 else None,
    )
