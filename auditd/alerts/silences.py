"""Silences, as in Alertmanager: label matchers, a time range, an author and a comment.

Pure matching here (the matcher grammar is ``matchers.py``); the outbox applies it at the
notify stage, so a silenced notification is recorded (status "silenced") and never sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from auditd import matchers
from auditd.alerts.labels import NAMES as LABELS  # what a notification can be matched on
from auditd.matchers import Matcher


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    expired_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str | None]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def parse_matcher(text: str) -> Matcher:
    """'rule=pvc-on-secondary', 'subject=dr2/*', 'cluster!=dr1', 'rule=~"rpo-.*"'."""
    return matchers.parse(text, LABELS)


def silenced_by(
    silences: Iterable[Silence], labels: Mapping[str, str | None], now: datetime
) -> Silence | None:
    return next((s for s in silences if s.active(now) and s.matches(labels)), None)
