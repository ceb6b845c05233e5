"""Real `rbd mirror pool status --verbose` captures, re-timed to a chosen instant.

A capture's times are those of the day it was taken; replayed later, every image would look
stale. Re-timing moves every time in the text by the same amount, so that the newest
``last_update`` becomes ``at``: relative ages (a dead rbd-mirror's old report) stay true.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

CAPTURES = Path(__file__).parent / "captures"
SITE = {"dr1": "site-a", "dr2": "site-b"}

_LAST_UPDATE = re.compile(r'("last_update":\s*")(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(")')
# Inside the description, itself a JSON string: \"local_snapshot_timestamp\":1795686480
_EPOCH = re.compile(r'((?:local|remote)_snapshot_timestamp\\?":\s*)(\d+)')
_FMT = "%Y-%m-%d %H:%M:%S"


def retime(text: str, at: datetime) -> str:
    stamps = [datetime.strptime(m.group(2), _FMT) for m in _LAST_UPDATE.finditer(text)]
    if not stamps:
        return text
    shift = at.astimezone(UTC).replace(tzinfo=None, microsecond=0) - max(stamps)
    text = _LAST_UPDATE.sub(
        lambda m: (
            m.group(1) + (datetime.strptime(m.group(2), _FMT) + shift).strftime(_FMT) + m.group(3)
        ),
        text,
    )
    secs = int(shift.total_seconds())
    return _EPOCH.sub(lambda m: m.group(1) + str(int(m.group(2)) + secs), text)


def pool_status(scenario: str, cluster: str, at: datetime) -> str:
    """The capture of ``scenario`` for the site of ``cluster`` (dr1/dr2), as if taken at ``at``."""
    path = CAPTURES / scenario / f"{SITE[cluster]}-mirror-pool-status-verbose.json"
    if not path.exists():
        path = CAPTURES / "healthy" / path.name
    return retime(path.read_text(), at)
