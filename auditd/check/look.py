"""One look at everything `auditd check` judges: every configured cluster listed once (each
kind the daemon watches, and StorageClasses for preflight), and every pool's mirror status probed once on each site that has
Ceph access. The I/O edge of the check; judging is judge.py's, on what this returns.

What could not be seen is said, never left out: a cluster that does not answer, a kind whose
list fails, a probe that fails. Each becomes what the daemon makes of it (a blind stream, a
failing probe), so the same rules judge those volumes unknown, never healthy.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditd.clock import SYSTEM, Clock
from auditd.config import ClusterConfig, Config
from auditd.inventory.facts import facts_of
from auditd.sources.kube.events import KubeEvent
from auditd.sources.kube.health import StreamHealth
from auditd.sources.kube.kinds import LOOKED_AT_KINDS, STORAGE_CLASS, kinds_for
from auditd.sources.kube.watch import ListWatcher
from auditd.sources.rbd.probe import PoolProber, ProbeResult
from auditd.sources.rbd.transport import transport_for


@dataclass
class Look:
    at: datetime  # when the look began: what the verdicts are dated by
    events: list[KubeEvent] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    streams: list[dict[str, Any]] = field(default_factory=list)  # StreamHealth snapshots
    unseen: list[str] = field(default_factory=list)  # what could not be seen, and why
    unlisted: list[str] = field(default_factory=list)  # StorageClasses not listed, and why


def look(config: Config, clock: Clock = SYSTEM) -> Look:
    """List and probe everything once; clusters and sites in parallel (one slow site must not
    make the check take the sum of every timeout)."""
    out = Look(clock.now())
    jobs: list[Callable[[], None]] = [
        _lister(config, cluster, out, clock) for cluster in config.clusters
    ]
    for pair in config.pairs:
        for name in pair.clusters:
            cluster = config.cluster(name)
            if cluster.ceph is None:
                out.unseen.append(f"{name}: no ceph access configured, its images are unknown")
                continue
            for pool in pair.pools:
                jobs.append(_prober(config, cluster, pool, out, clock))
    if jobs:
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool_:
            for f in [pool_.submit(job) for job in jobs]:
                f.result()
    out.events.sort(key=lambda e: e.received_at)
    return out


def _lister(config: Config, cluster: ClusterConfig, out: Look, clock: Clock) -> Callable[[], None]:
    def run() -> None:
        events: list[KubeEvent] = []
        # A hub holds Ramen's objects only; a DR cluster the rest, StorageClasses included.
        looked = kinds_for(cluster.role, LOOKED_AT_KINDS)
        for i, kind in enumerate(looked):
            health = StreamHealth(cluster.name, kind.kind, _clock=clock)
            watcher = ListWatcher(
                cluster,
                kind,
                config.watch,
                events.append,
                health,
                normalize=facts_of,
                label_selector=config.watch.label_selectors.get(kind.kind),
                clock=clock,
            )
            why = watcher.list_once()
            if kind is STORAGE_CLASS and why is not None:
                # Only preflight asks for StorageClasses (and an older reader role cannot list
                # them): unlisted, its reason is unknown; the cluster is not blind for it.
                out.unlisted.append(f"{cluster.name} {kind.kind}: {why}")
                continue
            # list.append and += on a list are atomic under the GIL: threads share ``out``.
            out.streams.append(health.snapshot())
            if why is not None:
                out.unseen.append(f"{cluster.name} {kind.kind}: {why}")
                if why.startswith(("cluster unavailable", "connection:")):
                    # Every kind after it would fail the same way: say so once, mark them.
                    for other in looked[i + 1 :]:
                        if other is STORAGE_CLASS:
                            continue
                        h = StreamHealth(cluster.name, other.kind, _clock=clock)
                        h.mark_disconnected()
                        h.mark_error(why)
                        out.streams.append(h.snapshot())
                    break
        out.events += events

    return run


def _prober(
    config: Config, cluster: ClusterConfig, pool: str, out: Look, clock: Clock
) -> Callable[[], None]:
    def run() -> None:
        prober = PoolProber(
            cluster.name,
            pool,
            transport_for(cluster),
            config.probe.timeout.total_seconds(),
            lambda _: None,
            clock,
        )
        result = prober.probe_status()
        assert result is not None  # nothing else probes this pool in this process
        out.probes.append(result)
        if result.failure is not None:
            out.unseen.append(
                f"{cluster.name} pool {pool}: probe failed ({result.failure.kind}): "
                f"{result.failure.message}"
            )

    return run
