"""What travels through the notify pipeline: typed and neutral, in no sink's words.

The ingest writer stores an ``Alert`` (one violation's change) in the outbox; the flush stage
stores an ``Incident`` (what a group of alerts owes its channel). Each sink renders them at
delivery, in its own words (Block Kit, a text line, an Alertmanager alert), so nothing is
rendered on the writer thread, and a sink never parses another sink's format.

Stored as JSON with ``"v": 2``. Rows written before (no ``v``) carry their words already
rendered (``text``, ``blocks``, ``parent``): they are read into ``Words`` and delivered as they
were decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from auditd.alerts.labels import labels as labels_of
from auditd.rules.lifecycle import Active

SCHEMA = 2

# Each rule's runbook: a section of docs/operations.md named after the rule.
RUNBOOKS = "https://github.com/auditd/auditd/blob/main/docs/operations.md"


def runbook_url(rule: str) -> str:
    return f"{RUNBOOKS}#{rule}"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _time(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) and v else None


def _str(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def stored_labels(d: Mapping[str, Any]) -> dict[str, str | None]:
    """A stored alert's labels alone (what routing matches on), whatever else the row holds."""
    labels = d.get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): v if v is None else str(v) for k, v in labels.items()}


@dataclass(frozen=True)
class Words:
    """A message already in words: what rows from before schema 2 hold (and what a sink sends
    for them, unchanged). ``parent``: the incident's first message, edited to its state."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    parent: Words | None = None
    late: timedelta = timedelta(0)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Words:
        parent = d.get("parent")
        return cls(
            _str(d.get("text")),
            d.get("blocks") if isinstance(d.get("blocks"), list) else None,
            cls.from_json(parent) if isinstance(parent, Mapping) else None,
        )


@dataclass(frozen=True)
class Alert:
    """One violation's change (firing or resolved), with everything any sink may say of it."""

    event: str
    rule: str
    subject: str
    severity: str
    summary: str
    labels: Mapping[str, str | None]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    verify: str = ""
    pair: str | None = None
    cluster: str | None = None
    first_seen: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    # How long after it was written it is being delivered (set by the deliver stage).
    late: timedelta = timedelta(0)
    # A row from before schema 2: its words as they were rendered then.
    words: Words | None = None

    @property
    def runbook_url(self) -> str:
        return runbook_url(self.rule)

    @classmethod
    def of(cls, v: Active, verify: str) -> Alert:
        return cls(
            event=v.state,
            rule=v.rule,
            subject=v.subject,
            severity=v.severity,
            summary=v.summary,
            labels=labels_of(v),
            evidence=dict(v.evidence),
            verify=verify,
            pair=v.pair,
            cluster=v.cluster,
            first_seen=v.first_seen,
            fired_at=v.fired_at or v.first_seen,
            resolved_at=v.resolved_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA,
            "event": self.event,
            "rule": self.rule,
            "subject": self.subject,
            "severity": self.severity,
            "summary": self.summary,
            "labels": dict(self.labels),
            "evidence": dict(self.evidence),
            "verify": self.verify,
            "pair": self.pair,
            "cluster": self.cluster,
            "first_seen": _iso(self.first_seen),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Alert:
        labels = stored_labels(d)
        evidence = d.get("evidence")
        return cls(
            event=_str(d.get("event")),
            rule=_str(d.get("rule") or labels.get("rule")),
            subject=_str(d.get("subject") or labels.get("subject")),
            severity=_str(d.get("severity") or labels.get("severity")),
            summary=_str(d.get("summary")),
            labels=labels,
            evidence=dict(evidence) if isinstance(evidence, Mapping) else {},
            verify=_str(d.get("verify")),
            pair=d.get("pair") or labels.get("pair"),
            cluster=d.get("cluster") or labels.get("cluster"),
            first_seen=_time(d.get("first_seen")),
            fired_at=_time(d.get("fired_at")),
            resolved_at=_time(d.get("resolved_at")),
            words=None if d.get("v") == SCHEMA else Words.from_json(d),
        )


@dataclass(frozen=True)
class Line:
    """One member of an incident as a list shows it."""

    subject: str
    summary: str


@dataclass(frozen=True)
class Listed:
    """The first few of some members, and how many there are in all."""

    shown: tuple[Line, ...] = ()
    total: int = 0


@dataclass(frozen=True)
class Incident:
    """What an incident (a group of alerts) owes its channel now: ``event`` is firing (its first
    message), update, resolved or repeat. Counts and the first few members, never one entry
    per member: 500 images behind a dead rbd-mirror daemon are one message."""

    event: str
    rule: str
    severity: str
    labels: Mapping[str, str]
    where: str
    noun: str  # what one member is: volumes, pools, clusters
    members: int
    firing: Listed
    opened_at: datetime
    lasted: timedelta | None = None  # first firing to last resolve, once all resolved
    added: Listed = Listed()
    resolved: Listed = Listed()
    # (subject, severity announced before, severity now)
    severity_changes: tuple[tuple[str, str, str], ...] = ()
    verify: str = ""  # the first firing member's
    # An incident of one reads as its alert.
    alone: Alert | None = None
    late: timedelta = timedelta(0)

    def to_json(self) -> dict[str, Any]:
        def listed(x: Listed) -> dict[str, Any]:
            return {"shown": [[m.subject, m.summary] for m in x.shown], "total": x.total}

        return {
            "v": SCHEMA,
            "incident": True,
            "event": self.event,
            "rule": self.rule,
            "severity": self.severity,
            "labels": dict(self.labels),
            "where": self.where,
            "noun": self.noun,
            "members": self.members,
            "firing": listed(self.firing),
            "opened_at": _iso(self.opened_at),
            "lasted": self.lasted.total_seconds() if self.lasted is not None else None,
            "added": listed(self.added),
            "resolved": listed(self.resolved),
            "severity_changes": [list(c) for c in self.severity_changes],
            "verify": self.verify,
            "alone": self.alone.to_json() if self.alone is not None else None,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Incident:
        def listed(x: Any) -> Listed:
            x = x if isinstance(x, Mapping) else {}
            shown = tuple(Line(_str(s), _str(m)) for s, m in x.get("shown") or [])
            return Listed(shown, int(x.get("total") or 0))

        lasted, alone = d.get("lasted"), d.get("alone")
        opened = _time(d.get("opened_at"))
        if opened is None:
            raise ValueError("incident message without opened_at")
        return cls(
            event=_str(d.get("event")),
            rule=_str(d.get("rule")),
            severity=_str(d.get("severity")),
            labels={str(k): _str(v) for k, v in (d.get("labels") or {}).items()},
            where=_str(d.get("where")),
            noun=_str(d.get("noun")),
            members=int(d.get("members") or 0),
            firing=listed(d.get("firing")),
            opened_at=opened,
            lasted=timedelta(seconds=float(lasted)) if lasted is not None else None,
            added=listed(d.get("added")),
            resolved=listed(d.get("resolved")),
            severity_changes=tuple(
                (_str(s), _str(o), _str(n)) for s, o, n in d.get("severity_changes") or []
            ),
            verify=_str(d.get("verify")),
            alone=Alert.from_json(alone) if isinstance(alone, Mapping) else None,
        )


Message = Alert | Incident | Words


def read(payload: Mapping[str, Any], *, incident: bool) -> Message:
    """The message an outbox row holds. ``incident``: the row is an incident's message (it has
    no violation of its own)."""
    if not incident:
        return Alert.from_json(payload)
    if payload.get("v") == SCHEMA:
        return Incident.from_json(payload)
    return Words.from_json(payload)


def delivered(message: Message, late: timedelta) -> Message:
    """The message as delivered ``late`` after it was written (its words say so, if late)."""
    return replace(message, late=late)
