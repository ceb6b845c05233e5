"""Prometheus metrics: what the ingest writer saw in each committed batch, plus the outbox
depth read from the database at scrape time.

The ingest thread is the only writer of these series (as of the history), so they agree with
the database: a lag gauge moves when its probe's batch was committed, not before.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from auditd import __version__
from auditd.alerts.labels import METRIC, labels
from auditd.daemon import collector
from auditd.inventory.inventory import (
    EXISTS,
    QUARANTINED,
    Inventory,
    ObjectKey,
    Transition,
    origin_kind,
)
from auditd.inventory.rbd_facts import RBD_IMAGE
from auditd.rules.lifecycle import Active, Change
from auditd.sources.kube.health import stream_state
from auditd.sources.rbd.probe import ProbeResult

CLASSES = ("healthy", "degraded", "error", "stale", "unknown")


class OutboxCollector(Collector):
    """Notifications by status, counted by the database when Prometheus scrapes."""

    def __init__(self, count_by_status: Callable[[], Mapping[str, int]]) -> None:
        self._count = count_by_status

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "auditd_outbox_notifications",
            "Outbox rows by status (pending + sending is the delivery backlog; dead needs a "
            "human).",
            labels=["status"],
        )
        try:
            counts = self._count()
        except Exception:  # a scrape must not fail because the database hiccuped
            counts = {}
        for status, n in sorted(counts.items()):
            family.add_metric([status], n)
        yield family


class Metrics:
    def __init__(self, count_by_status: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "auditd_rbd_image_lag_seconds",
            "Now minus the last snapshot the secondary synced, per image, as of the last good "
            "probe (no series while the probe fails).",
            ["cluster", "pool", "image"],
            registry=r,
        )
        # Per-pool counts carry the picture; per-image series exist only for images that are
        # not healthy. Five series for every image (one per class, mostly zeros) were 110,000
        # series at 10,000 images per site: 77 MB of the process, and a second per scrape of
        # the interpreter lock the ingest writer needs (bench/metrics_scale.py).
        self.images = Gauge(
            "auditd_rbd_images",
            "Images by mirror state class (healthy, degraded, error, stale, unknown), per pool "
            "as of its last probe; unknown while the pool's probe fails.",
            ["cluster", "pool", "state"],
            registry=r,
        )
        self.image_state = Gauge(
            "auditd_rbd_image_state",
            "1 for each image whose class is not healthy, labelled with that class (degraded, "
            "error, stale, unknown). A healthy image has no series: count them with "
            "auditd_rbd_images.",
            ["cluster", "pool", "image", "state"],
            registry=r,
        )
        # The class each image is counted under (the ingest thread is the only writer).
        self._class_of: dict[tuple[str, str, str], str] = {}
        self.probe_seconds = Histogram(
            "auditd_probe_duration_seconds",
            "How long one rbd probe of one pool took.",
            ["cluster", "pool", "kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.ingest_queue = Gauge(
            "auditd_ingest_queue_items",
            "Items (watch events, list pages, probe results) received and not yet taken by the"
            " ingest writer. Growing for minutes: the writer cannot keep up.",
            registry=r,
        )
        self.ingest_delay = Histogram(
            "auditd_ingest_delay_seconds",
            "From receiving the oldest item of a committed batch to its commit: how late the"
            " history and the verdicts are.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.ingest_batch = Histogram(
            "auditd_ingest_batch_items",
            "Items (watch events, list pages, probe results) in each committed batch. Each"
            " commit costs about the same whatever its size: batches of a few items under load"
            " are what makes the writer fall behind.",
            buckets=(1, 5, 25, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.probe_errors = Counter(
            "auditd_probe_errors_total",
            "Failed rbd probes, by failure kind (timeout, auth, garbage, ...).",
            ["cluster", "pool", "kind"],
            registry=r,
        )
        self.probes_on_demand = Counter(
            "auditd_probes_on_demand_total",
            "Status probes run out of turn because the rules needed fresher storage evidence.",
            ["cluster", "pool"],
            registry=r,
        )
        self.probe_overlaps = Counter(
            "auditd_probe_overlaps_total",
            "Probe turns skipped because the previous probe of that pool was still running.",
            ["cluster", "pool"],
            registry=r,
        )
        self.firing = Gauge(
            "auditd_violations_firing",
            "Violations firing now, by pair, rule, severity, cluster and namespace (the labels "
            "of their alerts, without the subject).",
            list(METRIC),
            registry=r,
        )
        self.fired = Counter(
            "auditd_rule_firings_total",
            "Violations that started firing, by rule and severity.",
            ["rule", "severity"],
            registry=r,
        )
        self.stream_up = Gauge(
            "auditd_watch_stream_up",
            "1 while a watch stream sees its kind (or the CRD is absent), 0 while blind.",
            ["cluster", "kind"],
            registry=r,
        )
        self.stream_relists = Counter(
            "auditd_watch_relists",
            "Relists of a watch stream (410 Gone, too-old or rejected resource version).",
            ["cluster", "kind"],
            registry=r,
        )
        self.stream_errors = Counter(
            "auditd_watch_errors",
            "Errors of a watch stream (connection, HTTP, bad events).",
            ["cluster", "kind"],
            registry=r,
        )
        # The streams' own counts (from their health) last seen, to turn into counter increments.
        self._stream_counts: dict[tuple[str, str], tuple[int, int]] = {}
        self.build = Info("auditd_build", "The running auditd.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        # process_* (CPU, memory, file descriptors) and python_gc_*, as every exporter has.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        # ...and how long the collector ran (started and stopped with the daemon).
        self.gc = collector.Timer()
        r.register(self.gc)
        self.quarantined = Gauge(
            "auditd_quarantined_objects",
            "Objects auditd could not take in (malformed, or refused by the history database), "
            "by cluster and kind: their last good state is kept, their current one is unknown.",
            ["cluster", "kind"],
            registry=r,
        )
        self.dropped = Counter(
            "auditd_ingest_dropped_items_total",
            "Items the ingest writer could neither record nor quarantine (logged with the reason).",
            registry=r,
        )
        self.history_writable = Gauge(
            "auditd_history_writable",
            "1 while the history database accepts writes; 0 while auditd holds events for it.",
            registry=r,
        )
        self.history_writable.set(1)
        self.leader = Gauge(
            "auditd_leader",
            "1 while this process leads the scope (a pair: writes its history and evaluates its"
            " rules; 'auditd': sends the alerts), 0 while another replica does.",
            ["scope"],
            registry=r,
        )
        self.ready = Gauge(
            "auditd_ready", "1 once every reachable cluster finished its first sync.", registry=r
        )
        if count_by_status is not None:
            r.register(OutboxCollector(count_by_status))

    def observe(
        self,
        probes: Sequence[ProbeResult],
        transitions: Iterable[Transition],
        lags: Sequence[tuple[str, str, str, float | None]],
        changes: Sequence[Change],
        active: Mapping[tuple[str, str], Active],
    ) -> None:
        """One committed ingest batch. Image states come from its transitions: the inventory
        already classified every image, and only a change needs a gauge update."""
        for p in probes:
            self.probe_seconds.labels(p.cluster, p.pool, p.kind).observe(p.duration)
            if p.failure is not None:
                self.probe_errors.labels(p.cluster, p.pool, p.failure.kind).inc()
        for t in transitions:
            if t.key.kind == QUARANTINED and t.field == EXISTS:
                self.quarantined.labels(t.key.cluster, origin_kind(t.key)).inc(
                    1 if t.new == "true" else -1
                )
            if t.key.kind != RBD_IMAGE:
                continue
            image = (t.key.cluster, t.key.namespace, t.key.name)
            if t.field == "class" and t.new is not None:
                self.image_states([(image, t.new)])
            elif t.field == EXISTS and t.new == "false":
                self._forget(image)
        for cluster, pool, name, lag in lags:
            if lag is None:  # unknown: no series, rather than a last value that looks current
                with suppress(KeyError):
                    self.lag.remove(cluster, pool, name)
            else:
                self.lag.labels(cluster, pool, name).set(lag)
        if not changes:
            return
        for c in changes:
            if c.violation.state == "firing" and c.previous != "firing":
                self.fired.labels(c.violation.rule, c.violation.severity).inc()
        self.firing_now(active)

    def streams(
        self,
        snapshots: Iterable[dict[str, Any]],
        at: datetime,
        blind_after: timedelta,
        stale_after: timedelta,
    ) -> None:
        """This replica's own view of every watch stream (``StreamHealth.snapshot()`` dicts),
        whichever replica writes the stream's pair: one that cannot watch a cluster could not
        take its pair over either."""
        for h in snapshots:
            labels = (h["cluster"], h["kind"])
            state = stream_state(h, at, blind_after, stale_after)
            # Reconnecting is not up: what auditd holds of that cluster is last-known only.
            self.stream_up.labels(*labels).set(1 if state in ("ok", "absent") else 0)
            relists, errors = self._stream_counts.get(labels, (0, 0))
            self.stream_relists.labels(*labels).inc(max(0, h["relists"] - relists))
            self.stream_errors.labels(*labels).inc(max(0, h["errors"] - errors))
            self._stream_counts[labels] = (h["relists"], h["errors"])

    def image_states(self, states: Iterable[tuple[tuple[str, str, str], str]]) -> None:
        """Set each (cluster, pool, image)'s class (at start from the loaded inventory, then on
        every change)."""
        for image, now in states:
            self._count(image, now)

    def images_now(self, inventory: Inventory) -> None:
        """Every image's class as ``inventory`` holds it, and nothing for an image it does not
        hold: at start, and whenever the writer's memory is reloaded from the history (a failed
        commit, a takeover from another replica). A standby's gauges were as of its start: the
        images it did not write since must not keep showing what they were then."""
        now = {
            (k.cluster, k.namespace, k.name): known.facts.get("class") or "unknown"
            for k, known in inventory.objects.items()
            if k.kind == RBD_IMAGE
        }
        for image in self._class_of.keys() - now.keys():
            self._forget(image)
        self.image_states(now.items())

    @property
    def classes(self) -> Mapping[tuple[str, str, str], str]:
        """Each image's class as the gauges count it, healthy ones included (the per-image
        gauge shows only the others)."""
        return MappingProxyType(self._class_of)

    def _forget(self, image: tuple[str, str, str]) -> None:
        """An image gone: no series left behind for it."""
        self._count(image, None)
        with suppress(KeyError):
            self.lag.remove(*image)

    def _count(self, image: tuple[str, str, str], now: str | None) -> None:
        """Move one image from the class it was counted under to ``now`` (None: gone)."""
        was = self._class_of.get(image)
        if was == now:
            return
        cluster, pool, _ = image
        if was is None:
            for state in CLASSES:  # every class of a pool reads 0, not absent, once it is seen
                self.images.labels(cluster, pool, state)
        else:
            self.images.labels(cluster, pool, was).dec()
            if was != "healthy":
                with suppress(KeyError):
                    self.image_state.remove(*image, was)
        if now is None:
            del self._class_of[image]
            return
        self._class_of[image] = now
        self.images.labels(cluster, pool, now).inc()
        if now != "healthy":
            self.image_state.labels(*image, now).set(1)

    def quarantine_now(self, keys: Iterable[ObjectKey]) -> None:
        """Seed the quarantine gauge from the loaded inventory."""
        for key in keys:
            if key.kind == QUARANTINED:
                self.quarantined.labels(key.cluster, origin_kind(key)).inc()

    def firing_now(self, active: Mapping[tuple[str, str], Active]) -> None:
        counts: dict[tuple[str, ...], int] = {}
        for v in active.values():
            if v.state == "firing":
                of = labels(v)
                key = tuple(of[name] or "" for name in METRIC)
                counts[key] = counts.get(key, 0) + 1
        self.firing.clear()
        for key, n in counts.items():
            self.firing.labels(*key).set(n)
