"""The daemon's write-ahead log: checkpointed on a thread of its own (store/checkpoint.py), in a
commit only past the backstop, which bounds it whatever the thread manages."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from auditd.store import db
from auditd.store.checkpoint import BACKSTOP_PAGES, Checkpointer
from auditd.store.db import make_engine

ROW = "x" * 2000  # about two rows a page: a commit of 1,000 rows writes about 500 pages


def _engine(tmp_path: Path, background: bool) -> tuple[Engine, Path]:
    db = tmp_path / "h.db"
    engine = make_engine(f"sqlite:///{db}", background_checkpoints=background)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    return engine, Path(f"{db}-wal")


def _write(engine: Engine, batches: int) -> None:
    for _ in range(batches):
        with engine.begin() as c:
            c.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": ROW}] * 1000)


def test_sqlites_own_checkpoints_run_inside_commits_unless_left_to_the_checkpointer(
    tmp_path: Path,
) -> None:
    own, own_wal = _engine(tmp_path / "own", background=False)
    left, left_wal = _engine(tmp_path / "left", background=True)
    try:
        _write(own, 8)
        _write(left, 8)
        # SQLite's own: the commit past 1,000 pages copied the log and started it again.
        assert own_wal.stat().st_size < 1200 * 4096
        # Left to the checkpointer (below the backstop): every page of 8 commits is still in
        # the log...
        assert 3000 * 4096 < left_wal.stat().st_size < BACKSTOP_PAGES * 4096
        pages = left_wal.stat().st_size
        checkpointer = Checkpointer(left)
        done = checkpointer.once()
        assert not done.busy and done.copied == done.log_pages > 3000
        # ...and once copied, the next commit writes the log from its start again.
        _write(left, 1)
        assert left_wal.stat().st_size == pages  # the file is reused, not grown
        assert checkpointer.once().log_pages < 1000
        checkpointer.stop()
    finally:
        own.dispose()
        left.dispose()


def test_the_log_stays_bounded_under_back_to_back_commits_whatever_the_thread_manages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pause between commits: a PASSIVE copy from the thread rarely finishes before the next
    write begins, so the log could not start again from there; the writer's own commit past
    the backstop does. Bounded however little CPU the thread gets (a loaded CI machine)."""
    monkeypatch.setattr(db, "BACKSTOP_PAGES", 1000)  # the daemon's 8,000, smaller, for speed
    engine, wal = _engine(tmp_path, background=True)
    checkpointer = Checkpointer(engine, every=0.01)
    checkpointer.start()
    try:
        _write(engine, 40)  # about 20,000 pages
        # The backstop, plus a few commits: the writer's copy skips a turn when it meets the
        # thread's (one checkpointer at a time).
        assert wal.stat().st_size < 5000 * 4096
        assert checkpointer.checkpoints > 0
    finally:
        checkpointer.stop()
    # Stopping took one last checkpoint: nothing committed is only in the log.
    with engine.connect() as c:
        busy, pages, copied = c.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    assert (busy, pages) == (0, copied)
    engine.dispose()


def test_a_failing_checkpoint_is_retried_on_a_new_connection(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path, background=True)
    checkpointer = Checkpointer(engine)
    checkpointer.once()
    broken = checkpointer._conn
    broken.dbapi_connection.close()  # what a lost handle looks like to the next statement
    try:
        checkpointer.once()
        raise AssertionError("a closed connection answered")
    except Exception as e:
        assert "closed" in str(e).lower()
    assert checkpointer._conn is None  # dropped: the next call takes a new one
    assert checkpointer.once().busy is False
    checkpointer.stop()
    engine.dispose()
