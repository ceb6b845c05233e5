"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

from sqlalchemy.orm import Session

from auditd.clock import SYSTEM
from auditd.store.db import make_engine, session_factory

TOKEN = "xoxb-e2e-secret-token-0042"  # what the fake Slack of the daemon tests accepts


def wait_until(cond: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@contextlib.contextmanager
def history(url: str) -> Iterator[Session]:
    """A session on a test's history database; its engine is disposed afterwards."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def demo_still_running(data_dir: Path) -> None:
    """Date the demo history's last heartbeat now, as a running daemon would have (it writes
    one every 5 s). Commands that judge a stored history "now" see a daemon silent for more
    than 15 s as not watching, and say unknown: correct, and on a loaded machine the seconds
    between `auditd demo` and a later command, or between two commands compared, cross it."""
    # The commands' own clock (shifted in CI's year-ahead pass), in the store's SQLite form.
    now = SYSTEM.now().astimezone(UTC).replace(tzinfo=None)
    now_text = now.isoformat(sep=" ", timespec="microseconds")
    with sqlite3.connect(data_dir / "auditd.db") as conn:
        conn.execute("UPDATE stream_health SET reported_at = ?", (now_text,))
    conn.close()
