"""Parse report windows: relative (30m, 24h, 7d) or absolute (ISO 8601)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_REL = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, now: datetime) -> datetime:
    """'30m'/'24h'/'7d' mean that long before now; otherwise ISO 8601 (naive means UTC)."""
    text = value.strip()
    m = _REL.match(text)
    if m:
        return now - timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    if text == "now":
        return now
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (use 30m, 24h, 7d, or ISO 8601 like 2026-11-26T08:00:00Z)"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
