"""Silences in the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.alerts.silences import Silence
from auditd.store.models import SilenceRow


def _silence(r: SilenceRow) -> Silence:
    return Silence(
        id=r.id,
        matchers=tuple((str(k), str(v)) for k, v in r.matchers.get("matchers", [])),
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        author=r.author,
        comment=r.comment,
        expired_at=r.expired_at,
    )


def add_silence(
    session: Session,
    matchers: list[tuple[str, str]],
    starts_at: datetime,
    ends_at: datetime,
    author: str,
    comment: str,
) -> int:
    row = SilenceRow(
        matchers={"matchers": [list(m) for m in matchers]},
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
    return [_silence(r) for r in session.scalars(q)]


def expire_silence(session: Session, silence_id: int, now: datetime) -> bool:
    row = session.get(SilenceRow, silence_id)
    if row is None or row.expired_at is not None:
        return False
    row.expired_at = now
    return True
