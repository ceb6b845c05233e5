"""SQLite's write-ahead log checkpointed on a thread of its own, for the daemon's history.

By default the commit that takes the log past 1,000 pages checkpoints it: copies its pages into
the database file and fsyncs the file, inside that commit. In the daemon that is the ingest
writer's commit, and a batch of changes spread over many objects dirties a page for almost
every object row it rewrites. Measured 2026-12-07 (the real schema, 30,000 objects, batches of
1,000 random objects' transition and state): the commit cost 14-16 us a row with the log
checkpointed in it, 5-6 without.

So the daemon's connections checkpoint in a commit only once the log has passed
``BACKSTOP_PAGES`` (``make_engine(..., background_checkpoints=True)`` sets
``wal_autocheckpoint`` to it), and this thread checkpoints every ``every`` seconds: PASSIVE, so
that it never waits for the writer or a reader and neither waits for it (SQLite releases the
GIL while it copies). A log copied entirely starts again from its beginning at the next write,
but only if no commit came between the copy and that write: under back-to-back commits, or
with this thread starved of CPU, it can fall behind, and then the writer's own commit past the
backstop copies it, as every commit past 1,000 pages did before. A thread cannot promise a
bound; the backstop does (a RESTART from here, tried first, lost the race to back-to-back
commits on a loaded CI machine: the log reached 22,000 pages). A log restarted is cut back to
``LOG_KEPT_BYTES`` (``journal_size_limit``). A reader holding an old snapshot (a long report)
holds the log back meanwhile, as it always did. CLI commands keep SQLite's own checkpoints:
they write little, and the last connection to close checkpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

from sqlalchemy import Engine

from auditd.logs import Spell, describe

log = logging.getLogger(__name__)

EVERY = 1.0
BACKSTOP_PAGES = 8000  # 32 MB of 4 KiB pages
LOG_KEPT_BYTES = 64 * 1024 * 1024


class Checkpoint(NamedTuple):
    busy: bool  # it could not copy all it was asked to (a writer or reader was in the way)
    log_pages: int  # pages in the log
    copied: int  # of them, in the database file now


class Checkpointer:
    def __init__(self, engine: Engine, every: float = EVERY) -> None:
        self.engine, self.every = engine, every
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None  # a DBAPI connection of its own, for its life
        self._spell = Spell(log, "WAL checkpoint")

    def once(self) -> Checkpoint:
        """One PASSIVE checkpoint. Raises what SQLite raises (the connection is dropped then,
        and the next call takes a new one)."""
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        try:
            cursor = self._conn.cursor()
            try:
                busy, pages, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                cursor.close()
        except Exception:
            self._close(broken=True)
            raise
        self.checkpoints += 1
        return Checkpoint(bool(busy), int(pages), int(copied))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, after one last checkpoint of what was committed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.every)
            try:
                self.once()
                self._spell.succeeded(time.monotonic())
            except Exception as e:  # the next tick tries again; the log only grows meanwhile
                self._spell.failed(describe(e), time.monotonic())
            if stopping:
                return

    def _close(self, broken: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if broken:
                conn.invalidate()  # not back into the pool
            else:
                conn.close()
        except Exception:
            log.debug("closing the checkpoint connection failed", exc_info=True)
