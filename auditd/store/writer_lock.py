"""One writer per SQLite history, enforced by the operating system.

Two `auditd run` on the same SQLite file would both write history and both post every alert.
An exclusive ``flock`` on ``<database>.lock``, taken at start and held for the life of the
process (the kernel drops it when the process dies, even by kill -9), makes the second one
refuse to start with one clear line. PostgreSQL deployments elect a leader instead
(daemon/leader.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url


class AnotherWriter(Exception):
    """Another auditd process holds the history's writer lock."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


class WriterLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AnotherWriter(
                f"another auditd run (pid {holder}) is writing {self.path.with_suffix('')}; "
                "one SQLite history has one writer"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
