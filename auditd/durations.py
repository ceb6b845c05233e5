"""Durations, read one way and printed one way everywhere.

Read as Kubernetes and Go write them (``90s``, ``5m``, ``1h30m``, ``7d``, ``1w``, ``250ms``), or
a plain number of seconds: config values, ``--since``/``--until``, ``silence add --for``,
``--db-wait``, ``AUDITD_CLOCK_SHIFT``. Printed as an SRE reads them (``45s``, ``5m 30s``,
``2h 5m``, ``3d 4h``): alerts, reports, status, explain and ``config show``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import durationpy

EXAMPLES = "30s, 5m, 1h30m, 7d, 1w"


def parse(value: Any, *, signed: bool = False) -> timedelta:
    """A duration from a config value or a flag; ``signed`` allows a leading minus (a clock
    shift). Raises ValueError naming the value and the accepted forms."""
    if isinstance(value, timedelta):
        d = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        d = timedelta(seconds=value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        try:
            d = timedelta(seconds=float(text)) if _number(text) else durationpy.from_str(text)
        except (durationpy.DurationError, ValueError, OverflowError):
            raise ValueError(f"not a duration: {value!r} (use e.g. {EXAMPLES})") from None
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. {EXAMPLES})")
    if d < timedelta(0) and not signed:
        raise ValueError(f"not a duration: {value!r} is negative")
    return d


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def human(d: timedelta) -> str:
    """``45s``, ``5m 30s``, ``2h 5m``, ``3d 4h``: two units at most, the larger first."""
    if d < timedelta(0):
        return "-" + human(-d)
    secs = int(d.total_seconds())
    if secs < 60:
        return f"{secs}s"
    mins, secs = divmod(secs, 60)
    if mins < 60:
        return f"{mins}m {secs}s" if secs else f"{mins}m"
    hours, mins = divmod(mins, 60)
    if hours < 48:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def compact(d: timedelta) -> str:
    """The form ``parse`` reads back, for config show and JSON: ``1h30m``, ``45s``, ``250ms``."""
    if d < timedelta(0):
        return "-" + compact(-d)
    ms = round(d.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out += f"{n}{unit}"
    return out + (f"{ms}ms" if ms else "")
