"""The shape of an episode's ``steps`` JSON column, written and read here only: its steps with
their times, and what a restart needs to go on judging an open window as the last run did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auditd.rules.windows import Episode


@dataclass(frozen=True)
class StoredSteps:
    steps: list[tuple[datetime, str]]
    promoted_at: datetime | None
    had_pvc: bool
    had_vr: bool


def to_json(ep: Episode) -> dict[str, Any]:
    return {
        "steps": [[t.isoformat(), what] for t, what in ep.steps],
        "had_pvc": ep.had_pvc,
        "had_vr": ep.had_vr,
        "promoted_at": ep.promoted_at.isoformat() if ep.promoted_at else None,
    }


def from_json(doc: dict[str, Any] | None) -> StoredSteps:
    doc = doc or {}
    promoted = doc.get("promoted_at")
    return StoredSteps(
        steps=[(datetime.fromisoformat(t), str(what)) for t, what in doc.get("steps", [])],
        promoted_at=datetime.fromisoformat(promoted) if promoted else None,
        had_pvc=bool(doc.get("had_pvc")),
        had_vr=bool(doc.get("had_vr")),
    )
