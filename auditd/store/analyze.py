"""The query planner's statistics of a SQLite history, kept current by the hourly prune.

PostgreSQL's autovacuum analyzes tables as they change; SQLite never does on its own. Without
``sqlite_stat1`` its planner guesses, and for the report's queries it guesses worse: over a
million transitions the report's SQL took 0.68 s without statistics and 0.43 s with them
(bench/report_scale.py, 2026-12-07, the same history). The bench always analyzed; the daemon
never did, so every SQLite history in production ran the slower plans.

A full ANALYZE reads every index (0.13 s at 300,000 transitions, about 0.4 s at a million) in
a write transaction the ingest writer waits behind, so it runs only when the transitions table
has no statistics yet or has doubled or halved since its last ones: once a retention-bounded
history has grown to its size, about never.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# The table whose size decides: the one that grows, and that the report reads most.
TABLE = "transitions"
GROWTH = 2.0


def stale(analyzed_rows: int | None, rows: int) -> bool:
    """Are the statistics of a table of ``rows`` rows, last analyzed at ``analyzed_rows``
    (None: never), worth refreshing?"""
    if analyzed_rows is None:
        return True
    return rows > GROWTH * max(analyzed_rows, 1) or rows * GROWTH < analyzed_rows


def refresh(sessions: sessionmaker[Session]) -> bool:
    """ANALYZE a SQLite history whose statistics are missing or stale; True when it did.
    Nothing to do on PostgreSQL."""
    with sessions.begin() as s:
        if s.get_bind().dialect.name != "sqlite":
            return False
        has_stats = s.execute(
            text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
        ).first()
        analyzed = None
        if has_stats:
            # Each of the table's rows (one per index) starts with the rows that index holds:
            # a partial index (class changes only) holds a few. Read as the table's size, the
            # first row made every prune find the table "grown" past twice that, and analyze a
            # history of 12 million transitions hourly, the ingest writer waiting behind it for
            # 7 s each time (bench/report_scale.py, 2026-12-07). A full index holds them all.
            stats = s.execute(
                text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t"), {"t": TABLE}
            ).scalars()
            counts = [int(str(stat).split()[0]) for stat in stats if stat]
            analyzed = max(counts) if counts else None
        rows = int(s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one())
        if not stale(analyzed, rows):
            return False
        s.execute(text("ANALYZE"))
    log.info(
        "analyzed the history for the query planner: %d transitions (statistics were of %s)",
        rows,
        "none" if analyzed is None else f"{analyzed}",
    )
    return True
