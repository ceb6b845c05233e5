"""Who writes: one leader among replicas that share a PostgreSQL history.

Several `auditd run` may point at one PostgreSQL database (two replicas, or two pods during a
rollout). Only one may write history, evaluate and notify, or every alert is posted twice.

Election: a session-level advisory lock (``ELECTION``) held on a connection of its own. It is
released by PostgreSQL the moment that session ends: a leader killed with -9 closes its socket
and a standby takes over at its next try (``retry_every``). The session sets TCP keepalives so
that PostgreSQL also notices a leader cut off by the network, and the leader checks its
session every ``retry_every``; when the check fails it steps down at once, well before the
server could have given the lock to anyone else.

Fence: every commit of the leader's sessions first takes ``FENCE`` in shared mode (held to the
end of the transaction) and checks that the election lock is still held by its own lock
session. A new leader, before it writes, takes ``FENCE`` exclusively once: it waits for any
commit the old leader had already checked, and any commit the old leader tries later fails the
check and rolls back. So a
deposed leader that still runs can neither commit nor post (the outbox marks a row
``sending`` in a fenced transaction before it calls a sink).

Standbys keep watching (their inventory stays current); when one takes over it reconciles the
history with what it holds, as a restart reconciles with a fresh list (daemon/ingest.py).
SQLite has one writer by construction (store/writer_lock.py) and needs none of this.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from auditd.clock import SYSTEM, Clock
from auditd.logs import Spell, describe
from auditd.store.db import normalize_url

log = logging.getLogger(__name__)

# Advisory lock keys (two int4: a namespace for auditd, then the lock).
NAMESPACE = 0x61756469  # "audi"
ELECTION, FENCE = 1, 2


class NotLeader(Exception):
    """This process does not (or no longer) lead: it must not write history or notify."""


def identity() -> str:
    """Who this process is, for `auditd status` (the pod's name in Kubernetes)."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"


class Leadership:
    """The single-writer case (SQLite): always the leader."""

    is_leader = True
    holder: str | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def fence(self, sessions: sessionmaker[Session]) -> None:
        pass

    def someone_else_leads(self) -> bool:
        return False


class PgLeadership(Leadership):
    def __init__(
        self,
        url: str,
        retry_every: float = 2.0,
        on_change: Callable[[bool], None] = lambda _leading: None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.is_leader = False
        self.me = identity()
        self.holder = None
        self.retry_every = retry_every
        self.on_change = on_change
        self.clock = clock
        # Its own engine, no pool: the lock lives and dies with exactly one session.
        self._engine: Engine = create_engine(
            normalize_url(url),
            poolclass=NullPool,
            connect_args={
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "connect_timeout": 5,
            },
        )
        self._conn: Connection | None = None
        self._pid: int | None = None
        # The last attempt found the lock held by another session (a live leader elsewhere).
        self._other = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)
        self._spell = Spell(log, "leader election")

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._try()  # a lone replica leads from its first moment
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._step_down("stopping")
        self._engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.retry_every):
            try:
                if self._conn is None:
                    self._try()
                elif not self.is_leader:
                    self._step_down("a commit found the election lock no longer ours")
                else:
                    self._check()
            except Exception:  # the election must outlive any bug in one round
                log.exception("leader election round failed")

    def _try(self) -> None:
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as e:
            self._other = False  # unknown: nobody is known to lead
            self._spell.failed(describe(e), time.monotonic())
            return
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": NAMESPACE, "key": ELECTION}
            ).scalar()
            conn.commit()
            if not got:
                self.holder = self._read_holder(conn)
                self._other = True
                conn.close()
                self._spell.succeeded(time.monotonic())
                return
            # Wait out whatever the previous leader had begun, then write as the leader.
            conn.execute(
                text("SELECT pg_advisory_lock(:ns, :key)"), {"ns": NAMESPACE, "key": FENCE}
            )
            conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": NAMESPACE, "key": FENCE}
            )
            self._pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            conn.commit()
        except SQLAlchemyError as e:
            conn.close()
            self._spell.failed(describe(e), time.monotonic())
            return
        self._record(conn, acquired=True)
        self._spell.succeeded(time.monotonic())
        self._conn, self.holder = conn, self.me
        self._other = False
        self.is_leader = True
        log.info("leading: this process writes the history and sends alerts (%s)", self.me)
        self.on_change(True)

    def _check(self) -> None:
        """Still holding the lock? Renew the record others read; step down on any doubt."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute(text("SET LOCAL statement_timeout = '3s'"))
            conn.execute(text("SELECT 1"))
            conn.commit()
        except SQLAlchemyError as e:
            self._step_down(f"lost the database session: {describe(e)}")
            return
        self._record(conn, acquired=False)

    def _record(self, conn: Connection, acquired: bool) -> None:
        """Say who leads, for `auditd status`. Best effort: a database that takes no writes
        (read-only, full) still has a leader, which then holds its events."""
        now = self.clock.now()
        try:
            if acquired:
                conn.execute(
                    text(
                        "INSERT INTO leaders (scope, holder, acquired_at, renewed_at) "
                        "VALUES ('all', :me, :now, :now) ON CONFLICT (scope) DO UPDATE "
                        "SET holder = :me, acquired_at = :now, renewed_at = :now"
                    ),
                    {"me": self.me, "now": now},
                )
            else:
                conn.execute(
                    text(
                        "UPDATE leaders SET renewed_at = :now WHERE scope = 'all' AND holder = :me"
                    ),
                    {"me": self.me, "now": now},
                )
            conn.commit()
        except SQLAlchemyError as e:
            log.debug("cannot record the leadership: %s", describe(e))
            with contextlib.suppress(SQLAlchemyError):
                conn.rollback()

    def _step_down(self, why: str) -> None:
        was = self._conn is not None  # announced as the leader (a fence may have seen it first)
        self.is_leader = False
        conn, self._conn, self._pid = self._conn, None, None
        if conn is not None:
            try:
                conn.close()  # ends the session: the lock goes with it
            except SQLAlchemyError:
                pass
        if was:
            log.warning("no longer leading: %s", why)
            self.on_change(False)

    @staticmethod
    def _read_holder(conn: Connection) -> str | None:
        try:
            row = conn.execute(text("SELECT holder FROM leaders WHERE scope = 'all'")).first()
            conn.commit()
            return str(row[0]) if row else None
        except SQLAlchemyError:
            return None

    # -------------------------------------------------------------------- fence
    def fence(self, sessions: sessionmaker[Session]) -> None:
        """Every commit of these sessions proves leadership first (see the module doc). Reads
        that never commit are not fenced: a standby may read the history."""

        def check(session: Session) -> None:
            pid = self._pid
            if not self.is_leader or pid is None:
                raise NotLeader(f"not the leader ({self.holder or 'nobody'} is)")
            connection = session.connection()
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock_shared(%(ns)s, %(key)s)",
                {"ns": NAMESPACE, "key": FENCE},
            )
            held = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = %(ns)s AND objid = %(key)s AND objsubid = 2 AND pid = %(pid)s",
                {"ns": NAMESPACE, "key": ELECTION, "pid": pid},
            ).scalar()
            if not held:
                self.is_leader = False  # no more writes from now; the election thread steps down
                raise NotLeader("the election lock is no longer ours")

        event.listen(sessions, "before_commit", check)

    def someone_else_leads(self) -> bool:
        return self._other and not self.is_leader
