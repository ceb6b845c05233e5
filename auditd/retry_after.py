"""Retry-After (RFC 9110, 10.2.3), read one way by the watch and by every sink: a number of
seconds, or an HTTP-date counted from the answer's own ``Date`` (the server's clock against
the server's clock, so no skew between it and auditd enters the delay)."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

# Longer than any sane throttle: a date decades out is a broken header, not an instruction.
LONGEST = 3600.0


def retry_after(headers: Mapping[str, Any] | Any, default: float | None = None) -> float | None:
    """Seconds to wait, from an answer's headers (any mapping with ``items()``, names in any
    case); ``default`` when the header is absent or unreadable."""
    found = {str(k).lower(): v for k, v in (headers.items() if headers else [])}
    value = _one(found.get("retry-after"))
    if value is None:
        return default
    try:
        return min(LONGEST, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        at = parsedate_to_datetime(value)
        date = _one(found.get("date"))
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return default
    if now is None or at.tzinfo is None or now.tzinfo is None:
        return default
    return min(LONGEST, max(0.0, (at - now).total_seconds()))


def _one(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return str(value).strip() if value is not None else None
