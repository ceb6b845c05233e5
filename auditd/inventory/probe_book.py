"""What is kept of each pool's probes between results, and the rows they make: the pool's probe
health (last success, failures in a row), every image's lag as of the probe (for /metrics), and
lag and throughput samples at most once per ``sample_every`` per image, the lag peak-held so a
coarse interval never hides a spike from the report's worst lag.

Pure: probe results and the inventory in, rows out; the ingest writer stores them. Lag itself
is the record book's (``RecordBook.lag``), the same number the rpo rule judges.

What a batch changes here is staged until its commit stood (``accept``): a batch whose write
failed is taken in again, and must make the same rows (its samples, its failure count) again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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

    def copy(self) -> _Pool:
        return replace(self, sampled_at=dict(self.sampled_at), peak_lag=dict(self.peak_lag))


class ProbeBook:
    def __init__(self, sample_every: timedelta) -> None:
        self.sample_every = sample_every
        self._pools: dict[tuple[str, str], _Pool] = {}
        # Copy-on-write for the batch in progress (a copy per pool probed, once per probe
        # interval: cheap beside the probe itself).
        self._staged: dict[tuple[str, str], _Pool] = {}

    def _pool(self, r: ProbeResult) -> _Pool:
        key = (r.cluster, r.pool)
        staged = self._staged.get(key)
        if staged is None:
            kept = self._pools.get(key)
            staged = self._staged[key] = kept.copy() if kept is not None else _Pool()
        return staged

    def accept(self) -> None:
        """The batch's commit stood: what it staged is kept."""
        self._pools.update(self._staged)
        self._staged.clear()

    def discard(self) -> None:
        """The batch in progress did not stand (or was never written): forget what it staged."""
        self._staged.clear()

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
        if len(p.sampled_at) > len(r.status.images) or len(p.peak_lag) > len(r.status.images):
            # Images gone from the pool: nothing of them is kept for months of churn.
            listed = {image.name for image in r.status.images}
            p.sampled_at = {k: v for k, v in p.sampled_at.items() if k in listed}
            p.peak_lag = {k: v for k, v in p.peak_lag.items() if k in listed}
        return out


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
