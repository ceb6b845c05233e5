"""The daemon's write-ahead log: never checkpointed in a commit, checkpointed on a thread of its
own (store/checkpoint.py), and bounded by it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from auditd.store.checkpoint import Checkpointer
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
        # Left to the checkpointer: every page of 8 commits is still in the log...
        assert left_wal.stat().st_size > 3000 * 4096
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


def test_the_checkpointer_bounds_the_log_even_under_back_to_back_commits(tmp_path: Path) -> None:
    """No pause between commits: a PASSIVE copy never finishes before the next write begins,
    so the log could not start again; past RESTART_PAGES the checkpointer makes it."""
    engine, wal = _engine(tmp_path, background=True)
    checkpointer = Checkpointer(engine, every=0.01, restart_pages=2000)
    checkpointer.start()
    try:
        _write(engine, 60)  # about 30,000 pages
        # Started again, more than once: how far past the bound depends on how long this
        # thread waits for the GIL while the writer writes 50,000 pages a second (up to 8,000
        # here, 2026-12-07); what matters is that the log did not take every page written.
        assert wal.stat().st_size < 15_000 * 4096
        assert checkpointer.checkpoints > 5
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


def test_past_its_bound_the_log_is_restarted_even_if_a_reader_must_be_waited_for(
    tmp_path: Path,
) -> None:
    """A reader holding an old snapshot (a long report) stops a PASSIVE copy short, and the
    log cannot start again. Past the bound the checkpointer asks for a RESTART, which waits
    for that reader (a short while, then says busy and tries again next tick)."""
    engine, _ = _engine(tmp_path, background=True)
    _write(engine, 1)
    reader = engine.connect()
    reader.exec_driver_sql("BEGIN")
    reader.exec_driver_sql("SELECT count(*) FROM t").one()  # a snapshot of one commit
    try:
        _write(engine, 4)  # about 2,000 pages the reader's snapshot does not have
        patient = Checkpointer(engine, restart_pages=10**9)
        done = patient.once()
        assert not done.busy and done.copied < done.log_pages  # PASSIVE: stopped short
        bounded = Checkpointer(engine, restart_pages=1000)
        assert bounded.once().busy  # RESTART: waited for the reader, which did not go
        patient.stop()
        bounded.stop()
    finally:
        reader.rollback()
        reader.close()
    after = Checkpointer(engine, restart_pages=1000)
    final = after.once()  # the reader gone: all of it copied
    assert not final.busy and final.copied == final.log_pages
    after.stop()
    engine.dispose()
