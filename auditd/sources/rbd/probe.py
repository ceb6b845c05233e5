"""One probe of one pool on one site: run `rbd`, parse, hand over a ProbeResult."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from auditd.clock import SYSTEM, Clock
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

    def _call(self, args: list[str]) -> tuple[bytes, float]:
        result = self.transport.run(args, self.timeout)
        if result.rc != 0:
            raise classify_failure(result.rc, result.stderr)
        if "permission denied" in result.stderr.lower():
            # Seen on the real lab: without the mon service commands, `rbd` exits 0 with
            # daemon_health UNKNOWN forever. A partial answer must not pass for an answer.
            raise ProbeFailure("auth", f"partial answer: {result.stderr.strip().splitlines()[-1]}")
        return result.stdout, result.duration

    def probe_status(self) -> ProbeResult:
        """The per-cycle probe: one call for the whole pool, never one per image."""
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
        self.emit(result)
        return result

    def _failed(self, kind: Literal["status", "info"], at: datetime, e: Exception) -> ProbeResult:
        if isinstance(e, ProbeFailure):
            failure = e
        elif isinstance(e, RbdParseError):
            failure = ProbeFailure("garbage", str(e))
        else:
            log.exception("rbd probe crashed", extra=self._extra)
            failure = ProbeFailure("internal", type(e).__name__)
        log.warning("rbd %s probe failed: %s", kind, failure, extra=self._extra)
        duration = (self.clock.now() - at).total_seconds()
        return ProbeResult(self.cluster, self.pool, kind, at, duration, failure=failure)
