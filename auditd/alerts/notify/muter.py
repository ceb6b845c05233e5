"""One answer to "is this alert held back, and why": silences, then inhibition.

As Alertmanager's ``Muter``: the route stage asks it of each new alert, and asks it again of
every held-back firing, so one whose silence expired or whose inhibiting parent resolved is
released while its violation still fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.alerts.inhibit import PARENT_RULES, Parent, inhibited_by
from auditd.alerts.silences import Silence, silenced_by
from auditd.store.models import ViolationRow
from auditd.store.silence_store import list_silences


@dataclass(frozen=True)
class Muted:
    status: str  # "silenced" or "inhibited": the notification's status, kept and never sent
    reason: str


@dataclass(frozen=True)
class Muter:
    silences: tuple[Silence, ...]
    parents: tuple[Parent, ...]
    now: datetime

    @classmethod
    def load(cls, session: Session, now: datetime) -> Muter:
        parents = tuple(
            Parent(v.rule, v.subject, v.cluster, v.pair)
            for v in session.scalars(
                select(ViolationRow).where(
                    ViolationRow.rule.in_(PARENT_RULES),
                    ViolationRow.state == "firing",
                    ViolationRow.resolved_at.is_(None),
                )
            )
        )
        return cls(tuple(list_silences(session, now)), parents, now)

    def mutes(self, labels: Mapping[str, str | None], event: str) -> Muted | None:
        """Why this notification is held back, or None. Only a firing is inhibited: a child
        whose firing went out still gets its resolve."""
        silence = silenced_by(self.silences, labels, self.now)
        if silence is not None:
            return Muted(
                "silenced", f"silenced by {silence.id} ({silence.author}: {silence.comment})"
            )
        parent = inhibited_by(self.parents, labels) if event == "firing" else None
        if parent is not None:
            return Muted("inhibited", f"inhibited by {parent.rule} {parent.subject}")
        return None
