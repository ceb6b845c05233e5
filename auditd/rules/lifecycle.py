"""The violation lifecycle, as in Alertmanager: inactive -> pending -> firing -> resolved.

Pure functions over an ``Active`` record; the store persists the resulting ``Change``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeGuard

from auditd.rules.model import Finding, Unknown, Verdict

State = Literal["pending", "firing", "resolved", "inactive"]


@dataclass(frozen=True)
class Active:
    """An open violation (pending or firing)."""

    rule: str
    subject: str
    state: State
    severity: str
    summary: str
    cluster: str | None
    pair: str | None
    evidence: dict[str, Any]
    first_seen: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """A state the violation moved into. ``notify`` is True for what people must hear about."""

    violation: Active
    previous: State | None

    @property
    def notify(self) -> bool:
        return self.violation.state == "firing" or (
            self.violation.state == "resolved" and self.previous == "firing"
        )


def moves(verdict: Verdict, held: bool) -> TypeGuard[Finding | None]:
    """Can this verdict change a violation? A finding can (it opens, fires or updates one), a
    healthy verdict only of one held open, an unknown never: it neither fires nor resolves."""
    if isinstance(verdict, Unknown):
        return False
    return verdict is not None or held


def step(
    active: Active | None, finding: Finding | None, for_: timedelta, now: datetime
) -> Change | None:
    """One verdict for one subject. Returns the change, or None when nothing moves."""
    if active is None:
        if finding is None:
            return None
        opened = Active(
            rule=finding.rule,
            subject=finding.subject,
            state="pending",
            severity=finding.severity,
            summary=finding.summary,
            cluster=finding.cluster,
            pair=finding.pair,
            evidence=finding.evidence,
            first_seen=now,
        )
        if for_ <= timedelta(0):
            return Change(replace(opened, state="firing", fired_at=now), None)
        return Change(opened, None)
    if finding is None:
        final: State = "resolved" if active.state == "firing" else "inactive"
        return Change(replace(active, state=final, resolved_at=now), active.state)
    if active.state == "pending" and now - active.first_seen >= for_:
        # Announced as it is now, not as it was first seen (a PVC on both sides may have been
        # joined by a VR on both sides while it was pending).
        return Change(
            replace(
                active,
                state="firing",
                fired_at=now,
                severity=finding.severity,
                summary=finding.summary,
                evidence=finding.evidence,
            ),
            "pending",
        )
    if active.state == "firing" and finding.severity != active.severity:
        # Escalated (or eased): announced again, as an update in the incident's thread.
        return Change(
            replace(
                active,
                severity=finding.severity,
                summary=finding.summary,
                evidence=finding.evidence,
            ),
            "firing",
        )
    if active.state == "pending" and (
        finding.severity != active.severity or finding.summary != active.summary
    ):
        return Change(replace(active, severity=finding.severity, summary=finding.summary), None)
    return None


def due(active: Active, for_: timedelta, now: datetime) -> Change | None:
    """Timer: a pending violation whose for-duration has passed fires without a new event."""
    if active.state == "pending" and now - active.first_seen >= for_:
        return Change(replace(active, state="firing", fired_at=now), "pending")
    return None
