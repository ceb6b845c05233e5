"""Silences, as in Alertmanager: label matchers, a time range, an author and a comment.

Pure matching here; the outbox applies it at the notify stage, so a silenced notification is
recorded (status "silenced") and never sent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from auditd.alerts.labels import NAMES as LABELS  # what a notification can be matched on


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[tuple[str, str], ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    expired_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str | None]) -> bool:
        return all(
            fnmatch.fnmatchcase(labels.get(k) or "", pattern) for k, pattern in self.matchers
        )


def parse_matcher(text: str) -> tuple[str, str]:
    """'rule=pvc-on-secondary' or 'subject=dr2/*' -> (label, pattern)."""
    label, sep, pattern = text.partition("=")
    label = label.strip()
    if not sep or label not in LABELS or not pattern:
        raise ValueError(
            f"not a matcher: {text!r} (use LABEL=PATTERN, LABEL one of {', '.join(LABELS)})"
        )
    return label, pattern.strip()


def silenced_by(
    silences: Iterable[Silence], labels: Mapping[str, str | None], now: datetime
) -> Silence | None:
    return next((s for s in silences if s.active(now) and s.matches(labels)), None)
