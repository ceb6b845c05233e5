"""What is kept of each pool's probes between results, and the rows they make: the pool's probe
health (last success, failures in a row), every image's lag as of the probe (for /metrics), and
lag and throughput samples at most once per ``sample_every`` per image, the lag peak-held so a
coarse interval never hides a spike from the report's worst lag.

Pure: probe results and the inventory in, rows out; the ingest writer stores them. Lag itself
is the record book's (``RecordBook.lag``), the same number the rpo rule judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from auditd.inventory.inventory import Inventory
from auditd.inventory.rbd_facts import RBD_IMAGE
from auditd.sources.rbd.probe import ProbeResult

Lag = tuple[str, str, str, float | None]  # cluster, pool, image, seconds (None: unknown)


@dataclass
class _Pool:
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    failures: int = 0
    sampled_at: dict[str, datetime] = field(default_factory=dict)  # image -> last sample
    peak_lag: dict[str, float] = field(default_factory=dict)  # image -> worst since then


class ProbeBook:
    def __init__(self, sample_every: timedelta) -> None:
        self.sample_every = sample_every
        self._pools: dict[tuple[str, str], _Pool] = {}

    def _pool(self, r: ProbeResult) -> _Pool:
        return self._pools.setdefault((r.cluster, r.pool), _Pool())

    def health_row(self, r: ProbeResult) -> dict[str, Any]:
        """The pool's probe_health row after this result."""
        p = self._pool(r)
        if r.failure is None:
            p.last_success_at, p.consecutive_failures = r.at, 0
        else:
            p.consecutive_failures += 1
            p.failures += 1
        return {
            "cluster": r.cluster,
            "pool": r.pool,
            "state": "ok" if r.failure is None else "failing",
            "last_attempt_at": r.at,
            "last_success_at": p.last_success_at,
            "duration_ms": int(r.duration * 1000),
            "consecutive_failures": p.consecutive_failures,
            "failures": p.failures,
            "last_error": str(r.failure) if r.failure else None,
            "images": len(r.status.images) if r.status else None,
        }

    def lags(self, r: ProbeResult, inventory: Inventory) -> list[Lag]:
        """Every image's lag as of this probe, or None for each image of a pool whose probe
        failed: unknown, not the last value."""
        if r.status is None:
            if r.kind != "status":
                return []
            return [
                (r.cluster, r.pool, k.name, None)
                for k in inventory.keys_of(r.cluster, RBD_IMAGE)
                if k.namespace == r.pool
            ]
        records = inventory.records
        return [(r.cluster, r.pool, i.name, records.lag(r.cluster, r.pool, i, r.at)) for i in r.status.images]  # fmt: skip

    def samples(self, r: ProbeResult, lags: list[Lag]) -> list[dict[str, Any]]:
        """The measurements rows this probe is due to write, from its ``lags`` (computed once
        per probe, for /metrics and here)."""
        if r.status is None:
            return []
        p = self._pool(r)
        lag_of = {image: lag for _, _, image, lag in lags}
        out = []
        for image in r.status.images:
            lag = lag_of.get(image.name)
            if lag is not None:
                held = p.peak_lag.get(image.name)
                p.peak_lag[image.name] = lag if held is None else max(held, lag)
            last = p.sampled_at.get(image.name)
            if last is not None and r.at - last < self.sample_every:
                continue
            info = image.replay_info() or {}
            p.sampled_at[image.name] = r.at
            out.append(
                {
                    "cluster": r.cluster,
                    "pool": r.pool,
                    "image": image.name,
                    "at": r.at,
                    "lag_seconds": p.peak_lag.pop(image.name, None),
                    "bytes_per_second": _num(info.get("bytes_per_second")),
                    "last_sync_seconds": _num(info.get("last_snapshot_sync_seconds")),
                    "last_sync_bytes": _int(info.get("last_snapshot_bytes")),
                }
            )
        return out


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
