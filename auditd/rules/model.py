"""What a rule is and what it returns. Rules are pure: facts in, findings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from auditd.config import Config
from auditd.inventory.inventory import Inventory, ObjectKey

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Finding:
    """A rule holds for a subject right now (whether it has fired yet is the lifecycle's business)."""

    rule: str
    subject: str
    severity: Severity
    summary: str
    cluster: str | None
    pair: str | None
    evidence: dict[str, Any]


@dataclass(frozen=True)
class RuleContext:
    inventory: Inventory
    config: Config

    def role_of(self, cluster: str) -> str | None:
        return next((c.role for c in self.config.clusters if c.name == cluster), None)


# Given the keys a change touched, return a verdict for every subject those keys affect:
# a Finding when violated, None when the subject is now fine.
Evaluate = Callable[[RuleContext, Iterable[ObjectKey]], dict[str, Finding | None]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    for_: timedelta
    summary: str
    description: str
    remediation: str
    evaluate: Evaluate
