"""Who writes what: replicas on one PostgreSQL history share the work by scope.

Several `auditd run` may point at one PostgreSQL database (replicas, or two pods during a
rollout). Each scope (a DR pair, an unpaired cluster, or auditd's own chores: daemon/scopes.py)
must have exactly one writer, or its alerts are posted twice. Replicas spread the pairs among
themselves: with N replicas and N pairs each leads one, and when one dies the others take its
pairs over.

Election: one session-level advisory lock per scope, all held on one connection of this
process's own. PostgreSQL releases them the moment that session ends: a replica killed with -9
closes its socket and the others take over at their next round (``retry_every``). The session
sets TCP keepalives so that PostgreSQL also notices a replica cut off by the network, and each
round checks the session; when the check fails the replica steps down from everything at once,
well before the server could have given the locks to anyone else.

Spread: every replica also holds a membership lock once it is ready (its watches synced, so
that it is never handed a pair cold). A member leads at most ceil(pairs / members) pairs: a
replica that joins makes the others release what they hold beyond that, and it takes those
pairs at its next round. The ``GLOBAL`` scope (delivering alerts, pruning) goes to whoever
takes it first.

Leases (in a pod): a ``coordination.k8s.io`` Lease per scope (daemon/lease.py) says who should
lead it; a replica takes a scope only when its Lease is not held by another, and gives it up
when another holds it. An API server that does not answer changes nothing: the lock decides.

Fence: every commit first takes, for each scope it writes (``session.info["scopes"]``, else
``GLOBAL``), that scope's fence lock in shared mode, and checks that this process's election
session still holds the scope's lock. A new leader of a scope takes its fence exclusively once
before it writes: it waits for any commit the old leader had already checked, and any commit
the old leader tries later fails the check and rolls back. So a deposed leader that still
runs can neither commit nor post (the outbox marks a row ``sending`` in a fenced transaction
before it calls a sink).

Standbys keep watching every cluster (their inventory stays warm); a replica that takes a
scope over reconciles the history with what it holds, as a restart reconciles with a fresh
list (daemon/ingest.py). SQLite has one writer by construction (store/writer_lock.py) and
leads every scope.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from auditd.clock import SYSTEM, Clock
from auditd.daemon.lease import Leases
from auditd.daemon.scopes import GLOBAL
from auditd.logs import Spell, describe
from auditd.store.db import normalize_url
from auditd.store.errors import NotLeader

log = logging.getLogger(__name__)

# Advisory locks are two int4: a namespace, then a key. They are per database, not per schema:
# keys are derived from the history's schema too (``lock_key``), so that two auditd histories
# in one database (a schema each) never elect across each other.
NAMESPACE = 0x61756469  # "audi": 3 = migrations (migrations/env.py)
LEGACY_ELECTION = 1  # the single election lock of auditd before per-pair leadership
LEAD_NS = 0x6175644C  # "audL": one lock per scope, held by its leader's election session
FENCE_NS = 0x61756446  # "audF": one per scope, shared by each commit, exclusive on takeover
# Members: one lock per live, ready replica, in a namespace of the history's own; random key.

State = Literal["lead", "follow", "unknown"]


def identity() -> str:
    """Who this process is, for `auditd status` (the pod's name in Kubernetes)."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"


def lock_key(realm: str, scope: str) -> int:
    """A scope's key in the history ``realm`` (its schema). Two that collide are simply led
    together."""
    return zlib.crc32(f"{realm}\0{scope}".encode()) & 0x7FFFFFFF


class Leadership:
    """The single-writer case (SQLite): this process leads every scope."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def fence(self, sessions: sessionmaker[Session]) -> None:
        pass

    def state(self, scope: str) -> State:
        return "lead"

    def leads(self, scope: str) -> bool:
        return self.state(scope) == "lead"

    def holder(self, scope: str) -> str | None:
        return None


class PgLeadership(Leadership):
    def __init__(
        self,
        url: str,
        units: Sequence[str],
        retry_every: float = 2.0,
        on_change: Callable[[frozenset[str]], None] = lambda _led: None,
        ready: Callable[[], bool] = lambda: True,
        clock: Clock = SYSTEM,
        leases: Leases | None = None,
    ) -> None:
        self.me = identity()
        # In a cluster, a Lease per scope says who should lead it; the advisory lock fences.
        self.leases = leases
        self._lease_spell = Spell(log, "Leases (electing by PostgreSQL alone meanwhile)")
        self.units = sorted(set(units) - {GLOBAL})
        self.retry_every = retry_every
        self.on_change = on_change
        self.ready = ready
        self.clock = clock
        # Its own engine, no pool: the locks live and die with exactly one session.
        self._engine: Engine = create_engine(
            normalize_url(url),
            poolclass=NullPool,
            connect_args={
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "connect_timeout": 5,
                # Who this session is, for the other replicas (a Lease holder still alive?).
                "application_name": self.me[:63],
            },
        )
        self._conn: Connection | None = None
        self._pid: int | None = None
        self._realm = ""  # the history's schema, once connected
        self._member: int | None = None  # this replica's membership key, once ready
        self._held: frozenset[str] = frozenset()
        # A commit found a lock gone, or the session is new: nothing is written, and nothing
        # followed, until a round has looked. A new session holds no lock yet; "follow" then
        # would have the writer follow, in memory only, what it held through an outage.
        self._suspect = False
        self._holders: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)
        self._spell = Spell(log, "leader election")

    # ------------------------------------------------------------------- answers
    def state(self, scope: str) -> State:
        """lead: write it; follow: another replica leads it (or is about to); unknown: this
        process has no database session, so cannot tell (an outage, most likely: hold)."""
        if self._conn is None or self._suspect:
            return "unknown"
        return "lead" if scope in self._held else "follow"

    def holder(self, scope: str) -> str | None:
        if scope in self._held:
            return self.me
        if self.leases is not None and scope in self.leases.holders:
            return self.leases.holders[scope]
        return self._holders.get(scope)

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._round()  # a lone replica leads from its first moment
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._step_down("stopping")
        self._engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.retry_every):
            try:
                self._round()
            except Exception:  # the election must outlive any bug in one round
                log.exception("leader election round failed")

    def _round(self) -> None:
        if self._conn is None and not self._connect():
            return
        conn = self._conn
        assert conn is not None
        try:
            conn.execute(text("SET LOCAL statement_timeout = '3s'"))
            self._verify(conn)
            if self._member is None and self.ready():
                self._join(conn)
            conn.commit()
            if self._legacy_leader(conn):
                # An auditd from before per-pair leadership leads everything (a rollout in
                # progress): lead nothing until it is gone.
                self._release(conn, self._held, "an older auditd leads every pair")
                self._suspect = False
                return
            self._renew_leases(conn)
            self._balance(conn)
            if GLOBAL not in self._held:
                self._take(conn, GLOBAL)
            self._read_holders(conn)
            self._suspect = False
        except SQLAlchemyError as e:
            self._step_down(f"lost the database session: {describe(e)}")
            self._spell.failed(describe(e), time.monotonic())
            return
        self._spell.succeeded(time.monotonic())
        self._record(conn)

    def _connect(self) -> bool:
        try:
            conn = self._engine.connect()
            pid, realm = conn.execute(text("SELECT pg_backend_pid(), current_schema()")).one()
            conn.commit()
        except SQLAlchemyError as e:
            self._spell.failed(describe(e), time.monotonic())
            return False
        self._pid, self._realm = int(pid), str(realm)
        self._conn, self._suspect = conn, True
        return True

    def _verify(self, conn: Connection) -> None:
        """The scopes whose lock this session really holds (a commit found one gone, or the
        session is new). Raises when the session is unusable."""
        rows = conn.execute(
            text(
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :ns AND objsubid = 2 AND pid = :pid"
            ),
            {"ns": LEAD_NS, "pid": self._pid},
        ).scalars()
        keys = set(rows)
        gone = {s for s in self._held if self._key(s) not in keys}
        if gone:
            self._held = self._held - gone
            log.warning("no longer leading %s: its lock is gone", ", ".join(sorted(gone)))
            self.on_change(self._held)

    def _join(self, conn: Connection) -> None:
        while True:
            # Not the global `random`: a seeded one would give every replica the same key.
            key = 1 + secrets.randbelow(0x7FFFFFFE)
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, :key)"),
                {"ns": self._key("members"), "key": key},
            ).scalar()
            if got:
                self._member = key
                return

    @staticmethod
    def _legacy_leader(conn: Connection) -> bool:
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :ns AND objid = :key AND objsubid = 2"
            ),
            {"ns": NAMESPACE, "key": LEGACY_ELECTION},
        ).scalar()
        conn.commit()
        return bool(held)

    def _balance(self, conn: Connection) -> None:
        """Hold ceil(pairs / members) pairs: release the excess, take free ones up to it."""
        members = conn.execute(
            text(
                "SELECT count(DISTINCT objid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND classid = :ns AND objsubid = 2"
            ),
            {"ns": self._key("members")},
        ).scalar_one()
        conn.commit()
        # A replica not yet ready is no member, but when nobody else is it still leads.
        share = math.ceil(len(self.units) / max(1, int(members)))
        mine = sorted(self._held - {GLOBAL})
        if len(mine) > share:
            self._release(conn, mine[share:], f"{members} replicas share {len(self.units)}")
            return
        # Start from a different pair on each replica, so two never race for the same one.
        free = [s for s in self.units if s not in self._held]
        start = (self._member or self._pid or 0) % max(1, len(free))
        for scope in free[start:] + free[:start]:
            if len(self._held - {GLOBAL}) >= share:
                break
            self._take(conn, scope)

    def _key(self, scope: str) -> int:
        return lock_key(self._realm, scope)

    def _renew_leases(self, conn: Connection) -> None:
        """Keep the Leases of the scopes held; give up a scope whose Lease another replica
        holds. An API server that does not answer deposes nobody: the advisory lock fences
        every write, so leading on it alone is safe, and an outage of the cluster auditd runs
        in must not silence the audit of the others."""
        if self.leases is None:
            return
        for scope in sorted(self._held):
            renewed = self._lease(conn, scope)
            if renewed is False:
                holder = self.leases.holders.get(scope, "another replica")
                self._release(conn, [scope], f"its Lease is held by {holder}")

    def _lease(self, conn: Connection, scope: str) -> bool | None:
        assert self.leases is not None
        got = self.leases.acquire_or_renew(scope, lambda holder: self._runs(conn, holder))
        if got is None:
            self._lease_spell.failed("the API server does not answer", time.monotonic())
        else:
            self._lease_spell.succeeded(time.monotonic())
        return got

    @staticmethod
    def _runs(conn: Connection, holder: str) -> bool:
        """Whether a replica still has its election session (a killed one has none)."""
        n = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": holder[:63]},
        ).scalar()
        conn.commit()
        return bool(n)

    def _take(self, conn: Connection, scope: str) -> None:
        key = self._key(scope)
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": LEAD_NS, "key": key}
        ).scalar()
        conn.commit()
        if not got:
            return  # a live replica leads it (its Lease, if lost, is its to take back)
        # A Lease held by another replica that still runs: not ours to take (it was handed to
        # that replica). Its holder dead (no session): ours now, not after it expires. No
        # answer from the API server: the lock alone decides.
        if self.leases is not None and self._lease(conn, scope) is False:
            conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": LEAD_NS, "key": key})
            conn.commit()
            return
        # Wait out whatever the previous leader had begun, then write as the leader.
        conn.execute(text("SELECT pg_advisory_lock(:ns, :key)"), {"ns": FENCE_NS, "key": key})
        conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": FENCE_NS, "key": key})
        conn.commit()
        self._held = self._held | {scope}
        self._record(conn, acquired=[scope])
        log.info("leading %s: this process writes its history and sends its alerts", scope)
        self.on_change(self._held)

    def _release(self, conn: Connection, scopes: Iterable[str], why: str) -> None:
        scopes = sorted(scopes)
        if not scopes:
            return
        # Stop writing first: a commit already checked holds the fence, which the next leader
        # waits for; a later one fails its check.
        self._held = self._held - set(scopes)
        self.on_change(self._held)
        for scope in scopes:
            conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"),
                {"ns": LEAD_NS, "key": self._key(scope)},
            )
        conn.commit()
        log.info("handed over %s (%s)", ", ".join(scopes), why)
        self._release_leases(scopes)

    def _release_leases(self, scopes: Iterable[str]) -> None:
        if self.leases is not None:
            for scope in scopes:
                self.leases.release(scope)

    def _record(self, conn: Connection, acquired: Sequence[str] = ()) -> None:
        """Say who leads what, for `auditd status`. Best effort: a database that takes no
        writes (read-only, full) still has leaders, which then hold their events."""
        now = self.clock.now()
        try:
            for scope in acquired:
                conn.execute(
                    text(
                        "INSERT INTO leaders (scope, holder, acquired_at, renewed_at) "
                        "VALUES (:scope, :me, :now, :now) ON CONFLICT (scope) DO UPDATE "
                        "SET holder = :me, acquired_at = :now, renewed_at = :now"
                    ),
                    {"scope": scope, "me": self.me, "now": now},
                )
            if self._held:
                conn.execute(
                    text(
                        "UPDATE leaders SET renewed_at = :now "
                        "WHERE holder = :me AND scope = ANY(:scopes)"
                    ),
                    {"me": self.me, "now": now, "scopes": sorted(self._held)},
                )
            if GLOBAL in self._held:
                # Pairs no longer configured have no leader to renew them: not "nobody leads".
                conn.execute(
                    text("DELETE FROM leaders WHERE scope <> ALL(:scopes)"),
                    {"scopes": [*self.units, GLOBAL]},
                )
            conn.commit()
        except SQLAlchemyError as e:
            log.debug("cannot record the leadership: %s", describe(e))
            with contextlib.suppress(SQLAlchemyError):
                conn.rollback()

    def _read_holders(self, conn: Connection) -> None:
        try:
            rows = conn.execute(text("SELECT scope, holder FROM leaders")).all()
            conn.commit()
        except SQLAlchemyError:
            with contextlib.suppress(SQLAlchemyError):
                conn.rollback()
            return
        self._holders = {str(scope): str(holder) for scope, holder in rows}

    def _step_down(self, why: str) -> None:
        held = self._held
        conn, self._conn, self._pid, self._member = self._conn, None, None, None
        self._held = frozenset()
        if conn is not None:
            try:
                conn.close()  # ends the session: every lock goes with it
            except SQLAlchemyError:
                pass
        if held:
            level = logging.INFO if self._stop.is_set() else logging.WARNING
            log.log(level, "no longer leading %s: %s", ", ".join(sorted(held)), why)
            self.on_change(self._held)
            self._release_leases(held)

    # -------------------------------------------------------------------- fence
    def fence(self, sessions: sessionmaker[Session]) -> None:
        """Every commit of these sessions proves leadership of what it writes first (see the
        module doc). Reads that never commit are not fenced: a standby may read the history."""

        def check(session: Session) -> None:
            scopes = set(session.info.get("scopes") or {GLOBAL})
            pid = self._pid
            if pid is None or self._suspect or not scopes <= self._held:
                raise NotLeader(f"not the leader of {', '.join(sorted(scopes - self._held))}")
            keys = sorted({self._key(s) for s in scopes})
            connection = session.connection()
            for key in keys:
                connection.exec_driver_sql(
                    "SELECT pg_advisory_xact_lock_shared(%(ns)s, %(key)s)",
                    {"ns": FENCE_NS, "key": key},
                )
            held = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = %(ns)s AND objid::bigint = ANY(%(keys)s) AND objsubid = 2"
                " AND pid = %(pid)s",
                {"ns": LEAD_NS, "keys": keys, "pid": pid},
            ).scalar()
            if held != len(keys):
                self._suspect = True  # no more writes until the election thread has looked
                raise NotLeader("an election lock is no longer ours")

        event.listen(sessions, "before_commit", check)
