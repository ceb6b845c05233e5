"""Kubernetes Leases: who should lead each scope, where auditd runs in a cluster.

One ``coordination.k8s.io/v1`` Lease per scope (``kubectl get leases -n auditd`` shows who
holds which pair), through the ``kubernetes`` client's own ``LeaseLock``. The acquire-or-renew
step follows client-go's leader election: a Lease held by another replica is free once it has
not changed for its duration, measured on this process's monotonic clock from when the change
was seen (never by comparing clocks across machines); a write that races another fails on the
resourceVersion (409) and is retried next round.

A Lease says who should write; it cannot stop a writer that lost it and still runs (a paused
process, a partition from the API server). The PostgreSQL advisory lock is still the fence
(daemon/leader.py): a replica writes a scope only while it holds both. The lock also tells
when a holder is dead (its database session is gone), so a killed replica's pairs move at
once instead of after its Lease's duration.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from kubernetes import client
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from auditd.clock import SYSTEM, Clock

log = logging.getLogger(__name__)

# LeaseLock logs every failed create/update at INFO (a lost race is routine here).
logging.getLogger("leaderelection").setLevel(logging.WARNING)


def lease_name(scope: str) -> str:
    """A DNS-1123 name for the scope's Lease: "pair/dr1-dr2" -> "auditd-pair-dr1-dr2"."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", scope.lower()).strip("-.")
    return f"auditd-{slug}"[:253]


@dataclass
class _Seen:
    holder: str | None
    renew_time: str | None
    at: float  # monotonic: when this record was first seen as it is


class Leases:
    def __init__(
        self,
        api: Any,
        namespace: str,
        identity: str,
        duration: timedelta,
        clock: Clock = SYSTEM,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.clock = clock
        self.monotonic = monotonic
        self._api = client.CoordinationV1Api(api)
        self._locks: dict[str, LeaseLock] = {}
        self._seen: dict[str, _Seen] = {}
        self.holders: dict[str, str] = {}

    def _lock(self, scope: str) -> LeaseLock:
        lock = self._locks.get(scope)
        if lock is None:
            lock = LeaseLock(lease_name(scope), self.namespace, self.identity)  # type: ignore[no-untyped-call]
            lock.api_instance = self._api  # this process's client, not the global default
            self._locks[scope] = lock
        return lock

    def _record(self, acquired: str | None = None, holder: str | None = None) -> Any:
        now = str(self.clock.now().astimezone(UTC))
        return LeaderElectionRecord(  # type: ignore[no-untyped-call]
            self.identity if holder is None else holder,
            str(int(self.duration.total_seconds())) if holder is None else "1",
            acquired or now,
            now,
        )

    def acquire_or_renew(
        self, scope: str, alive: Callable[[str], bool] = lambda _holder: True
    ) -> bool | None:
        """True: this process holds the scope's Lease (just taken or renewed). False: another
        replica does. None: the API server did not answer (unknown). ``alive(holder)`` says
        whether the holder still runs: a dead holder's Lease is taken before it expires."""
        try:
            return self._acquire_or_renew(scope, alive)
        except Exception as e:  # LeaseLock lets connection errors through
            log.debug("Lease of %s: %s", scope, type(e).__name__)
            return None

    def _acquire_or_renew(self, scope: str, alive: Callable[[str], bool]) -> bool | None:
        lock = self._lock(scope)
        name = lease_name(scope)
        found, record = lock.get(name, self.namespace)  # type: ignore[no-untyped-call]
        if not found:
            if getattr(record, "status", None) != 404:
                log.debug("cannot read Lease %s: %s", name, getattr(record, "reason", record))
                return None
            if lock.create(name, self.namespace, self._record()):  # type: ignore[no-untyped-call]
                self.holders[scope] = self.identity
                return True
            return self._after_refused_write(lock, scope)
        holder = record.holder_identity or None
        seen = self._seen.get(scope)
        if seen is None or (seen.holder, seen.renew_time) != (holder, record.renew_time):
            seen = self._seen[scope] = _Seen(holder, record.renew_time, self.monotonic())
        if holder is not None:
            self.holders[scope] = holder
        if (
            holder not in (None, self.identity)
            and self.monotonic() - seen.at < self._duration_of(record)
            and alive(holder)
        ):
            return False
        acquired = record.acquire_time if holder == self.identity else None
        if not lock.update(name, self.namespace, self._record(acquired)):  # type: ignore[no-untyped-call]
            return self._after_refused_write(lock, scope)
        self.holders[scope] = self.identity
        return True

    def _after_refused_write(self, lock: LeaseLock, scope: str) -> bool | None:
        """LeaseLock swallows why a write failed: a 409 (another replica wrote first) and a 500
        look the same. Read again: False only if another replica holds it now."""
        found, record = lock.get(lease_name(scope), self.namespace)  # type: ignore[no-untyped-call]
        holder = (record.holder_identity or None) if found else None
        if holder not in (None, self.identity):
            self.holders[scope] = holder
            return False
        return None

    def release(self, scope: str) -> None:
        """Give the Lease up at once (as client-go's ReleaseOnCancel): holder empty, 1 s."""
        lock = self._lock(scope)
        name = lease_name(scope)
        try:
            found, record = lock.get(name, self.namespace)  # type: ignore[no-untyped-call]
            if found and record.holder_identity == self.identity:
                lock.update(name, self.namespace, self._record(holder=""))  # type: ignore[no-untyped-call]
        except Exception as e:  # it expires by itself
            log.debug("cannot release the Lease of %s: %s", scope, type(e).__name__)

    def _duration_of(self, record: Any) -> float:
        try:
            return float(record.lease_duration)
        except (TypeError, ValueError):
            return self.duration.total_seconds()
