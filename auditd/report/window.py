"""Parse report windows: relative (30m, 1h30m, 7d, 1w: that long before now) or absolute
(ISO 8601)."""

from __future__ import annotations

from datetime import UTC, datetime

from auditd import durations


def parse_time(value: str, now: datetime) -> datetime:
    """A duration means that long before now; otherwise ISO 8601 (naive means UTC)."""
    text = value.strip()
    if text == "now":
        return now
    try:
        return now - durations.parse(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (use a duration before now like {durations.EXAMPLES}, "
            "or ISO 8601 like 2026-11-26T08:00:00Z)"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
