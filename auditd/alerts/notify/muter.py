"""One answer to "is this alert held back, and why": silences, then inhibition.

As Alertmanager's ``Muter``: the route stage asks it of each new alert, and asks it again of
every held-back firing, so one whose silence expired or whose inhibiting parent resolved is
released while its violation still fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.alerts.inhibit import Inhibitor, InhibitRule
from auditd.alerts.labels import NAMES as LABELS
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
    inhibitor: Inhibitor  # the firing alerts that may hold others back, and by which rule
    now: datetime

    @classmethod
    def load(cls, session: Session, now: datetime, inhibit_rules: Sequence[InhibitRule]) -> Muter:
        firing = (ViolationRow.state == "firing", ViolationRow.resolved_at.is_(None))
        rules = session.scalars(select(ViolationRow.rule).where(*firing).distinct()).all()
        sources = [r for r in rules if any(i.may_source(r) for i in inhibit_rules)]
        parents = tuple(
            {name: getattr(v, name) for name in LABELS}  # a violation row has each label
            for v in (
                session.scalars(select(ViolationRow).where(*firing, ViolationRow.rule.in_(sources)))
                if sources
                else ()
            )
        )
        return cls(tuple(list_silences(session, now)), Inhibitor(inhibit_rules, parents), now)

    def mutes(self, labels: Mapping[str, str | None], event: str) -> Muted | None:
        """Why this notification is held back, or None. Only a firing is inhibited: a child
        whose firing went out still gets its resolve."""
        silence = silenced_by(self.silences, labels, self.now)
        if silence is not None:
            return Muted(
                "silenced", f"silenced by {silence.id} ({silence.author}: {silence.comment})"
            )
        if event != "firing":
            return None
        parent = self.inhibitor.held_by(labels)
        if parent is not None:
            return Muted("inhibited", f"inhibited by {parent.get('rule')} {parent.get('subject')}")
        return None
