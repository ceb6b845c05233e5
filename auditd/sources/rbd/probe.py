"""One probe of one pool on one site: run `rbd`, parse, hand over a ProbeResult."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from auditd.clock import SYSTEM, Clock
from auditd.logs import Spell
from auditd.sources.rbd.parse import (
    PoolInfo,
    PoolStatus,
    RbdParseError,
    ScheduleStatus,
    parse_pool_info,
    parse_pool_status,
    parse_schedule_status,
)
from auditd.sources.rbd.transport import ProbeFailure, Transport, classify_failure, validate_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    cluster: str
    pool: str
    kind: Literal["status", "info"]
    at: datetime
    duration: float
    status: PoolStatus | None = None
    info: PoolInfo | None = None
    schedules: list[ScheduleStatus] = field(default_factory=list)
    failure: ProbeFailure | None = None


class PoolProber:
    def __init__(
        self,
        cluster: str,
        pool: str,
        transport: Transport,
        timeout: float,
        emit: Callable[[ProbeResult], None],
        clock: Clock = SYSTEM,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.pool = validate_pool(pool)
        self.transport = transport
        self.timeout = timeout
        self.emit = emit
        self._extra = {"cluster": cluster, "kind": f"rbd:{pool}"}
        # One status probe of a pool at a time: the scheduled one and one asked for on demand
        # never run side by side (the one in flight answers for both).
        self._busy = threading.Lock()
        self._started: float | None = None  # monotonic start of the last status probe
        self._spells = {
            k: Spell(log, f"rbd {k} probe", extra=self._extra) for k in ("status", "info")
        }

    def on_demand_delay(self, gap: float) -> float:
        """Seconds until a status probe asked for now may start: never within ``gap`` of the
        last one's start, so an event storm costs one probe per pool and gap, not one per
        event. (One still in flight answers for itself; a run that finds it busy is a no-op.)"""
        if self._started is None:
            return 0.0
        return max(0.0, gap - (time.monotonic() - self._started))

    def _call(self, args: list[str]) -> tuple[bytes, float]:
        result = self.transport.run(args, self.timeout)
        if result.rc != 0:
            raise classify_failure(result.rc, result.stderr)
        if "permission denied" in result.stderr.lower():
            # Seen on the real lab: without the mon service commands, `rbd` exits 0 with
            # daemon_health UNKNOWN forever. A partial answer must not pass for an answer.
            raise ProbeFailure("auth", f"partial answer: {result.stderr.strip().splitlines()[-1]}")
        return result.stdout, result.duration

    def probe_status(self) -> ProbeResult | None:
        """The per-cycle probe: one call for the whole pool, never one per image. None when
        another status probe of this pool is still in flight (its result answers for both)."""
        if not self._busy.acquire(blocking=False):
            return None
        try:
            self._started = time.monotonic()
            return self._probe_status()
        finally:
            self._busy.release()

    def _probe_status(self) -> ProbeResult:
        at = self.clock.now()
        try:
            out, took = self._call(
                ["mirror", "pool", "status", self.pool, "--verbose", "--format", "json"]
            )
            result = ProbeResult(
                self.cluster, self.pool, "status", at, took, status=parse_pool_status(out)
            )
        except (ProbeFailure, RbdParseError) as e:
            result = self._failed("status", at, e)
        else:
            self._recovered("status")
        self.emit(result)
        return result

    def probe_info(self) -> ProbeResult:
        """The slow-cadence probe: mirroring mode and peers, and snapshot schedules."""
        at = self.clock.now()
        try:
            out, took = self._call(["mirror", "pool", "info", self.pool, "--format", "json"])
            info = parse_pool_info(out)
            out, took2 = self._call(
                [
                    "mirror",
                    "snapshot",
                    "schedule",
                    "status",
                    "--pool",
                    self.pool,
                    "--format",
                    "json",
                ]
            )
            schedules = parse_schedule_status(out)
            result = ProbeResult(
                self.cluster, self.pool, "info", at, took + took2, info=info, schedules=schedules
            )
        except Exception as e:
            result = self._failed("info", at, e)
        else:
            self._recovered("info")
        self.emit(result)
        return result

    def _recovered(self, kind: str) -> None:
        self._spells[kind].succeeded(time.monotonic())

    def _failed(self, kind: Literal["status", "info"], at: datetime, e: Exception) -> ProbeResult:
        if isinstance(e, ProbeFailure):
            failure = e
        elif isinstance(e, RbdParseError):
            failure = ProbeFailure("garbage", str(e))
        else:
            log.exception("rbd probe crashed", extra=self._extra)
            failure = ProbeFailure("internal", type(e).__name__)
        # A lost site fails every cycle: one line when the spell starts, a summary while it
        # lasts, one when it ends (its history is the pool's probe fact, not the log).
        self._spells[kind].failed(str(failure), time.monotonic())
        duration = (self.clock.now() - at).total_seconds()
        return ProbeResult(self.cluster, self.pool, kind, at, duration, failure=failure)
