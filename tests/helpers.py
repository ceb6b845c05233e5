"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session

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
