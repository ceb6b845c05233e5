"""Silences in the database. Matchers are stored as ``[label, op, value]``; rows from before
operators existed hold ``[label, glob]``, read as ``label=glob`` (what they always meant)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.alerts.silences import Silence
from auditd.matchers import Matcher
from auditd.store.models import SilenceRow

log = logging.getLogger(__name__)


def _matcher(stored: Sequence[Any]) -> Matcher:
    if len(stored) == 2:
        return Matcher(str(stored[0]), "=", str(stored[1]))
    label, op, value = stored
    return Matcher(str(label), op, str(value))


def _silence(r: SilenceRow) -> Silence:
    return Silence(
        id=r.id,
        matchers=tuple(_matcher(m) for m in r.matchers.get("matchers", [])),
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        author=r.author,
        comment=r.comment,
        expired_at=r.expired_at,
    )


def add_silence(
    session: Session,
    matchers: Sequence[Matcher],
    starts_at: datetime,
    ends_at: datetime,
    author: str,
    comment: str,
) -> int:
    row = SilenceRow(
        matchers={"matchers": [[m.label, m.op, m.value] for m in matchers]},
        starts_at=starts_at,
        ends_at=ends_at,
        author=author,
        comment=comment,
        created_at=starts_at,
    )
    session.add(row)
    session.flush()
    return row.id


def list_silences(session: Session, now: datetime, include_ended: bool = False) -> list[Silence]:
    q = select(SilenceRow).order_by(SilenceRow.id)
    if not include_ended:
        q = q.where(SilenceRow.expired_at.is_(None), SilenceRow.ends_at > now)
    out = []
    for r in session.scalars(q):
        try:
            out.append(_silence(r))
        except (ValueError, TypeError) as e:
            # Only a hand-edited row gets here (the CLI checks every matcher): it silences
            # nothing, and says so, rather than stopping every notification behind it.
            log.error("silence %s cannot be read, so it silences nothing: %s", r.id, e)
    return out


def expire_silence(session: Session, silence_id: int, now: datetime) -> bool:
    row = session.get(SilenceRow, silence_id)
    if row is None or row.expired_at is not None:
        return False
    row.expired_at = now
    return True
