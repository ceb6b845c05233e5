#!/usr/bin/env python3
"""What /metrics costs at N images per site: series, memory, one scrape, one probe's updates.

The daemon's own `Metrics` is seeded as a pair at steady state would be: N images per site,
the primary's all healthy, the secondary's healthy but for a small share (``--unhealthy``),
each secondary image with a lag. Then it is scraped (prometheus_client's text exposition, as
Prometheus asks for it) and one probe cycle's updates are applied (every lag moves, and a few
images change class).

Beside it, in the same run, the baseline: one bare gauge series per image and site, the least
any per-image exposition costs. A scrape renders on a thread of the daemon while the ingest
writer needs the same interpreter lock, so its seconds are the writer's too.

    python bench/metrics_scale.py [--images 10000] [--unhealthy 0.01] [--scrapes 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from auditd.daemon.metrics import Metrics
from auditd.inventory.inventory import ObjectKey, Transition
from auditd.inventory.rbd_facts import RBD_IMAGE
from auditd.sim.rbdpool import image_name

POOL = "replicapool"
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Cost:
    series: int
    memory_mb: float
    text_mb: float
    scrape_s: float


def measure(build: Callable[[], CollectorRegistry], scrapes: int) -> Cost:
    tracemalloc.start()
    registry = build()
    memory, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times, text = [], b""
    for _ in range(scrapes):
        t0 = time.perf_counter()
        text = generate_latest(registry)
        times.append(time.perf_counter() - t0)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return Cost(series, memory / 2**20, len(text) / 2**20, statistics.median(times))


def seeded(images: int, unhealthy: int) -> Metrics:
    m = Metrics()
    m.image_states(((cluster, POOL, image_name(i)), "healthy") for cluster in ("dr1", "dr2") for i in range(images))  # fmt: skip
    m.image_states((("dr2", POOL, image_name(i)), "stale") for i in range(unhealthy))
    m.observe([], [], [("dr2", POOL, image_name(i), 20.0 + i % 40) for i in range(images)], [], {})
    return m


def bare(images: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("bench_image", "one series per image", ["cluster", "pool", "image"], registry=registry)  # fmt: skip
    for cluster in ("dr1", "dr2"):
        for i in range(images):
            gauge.labels(cluster, POOL, image_name(i)).set(1)
    return registry


def probe_cycle(m: Metrics, images: int, changed: int) -> float:
    """One probe of the secondary's pool committed: every lag moves, ``changed`` images change
    class (half leave healthy, half come back)."""
    key = ObjectKey("dr2", RBD_IMAGE, POOL, "")
    moves = [
        Transition(key._replace(name=image_name(i)), "class", old, new, AT, "probe", False, None)
        for i in range(changed)
        for old, new in [("stale", "healthy") if i % 2 else ("healthy", "degraded")]
    ]
    lags = [("dr2", POOL, image_name(i), 30.0 + i % 40) for i in range(images)]
    t0 = time.perf_counter()
    m.observe([], moves, lags, [], {})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    ap.add_argument("--images", type=int, default=10_000, help="images per site (default 10000)")
    ap.add_argument("--unhealthy", type=float, default=0.01, help="share of the secondary's images not healthy (default 0.01)")  # fmt: skip
    ap.add_argument("--scrapes", type=int, default=3, help="scrapes to time (median; default 3)")
    args = ap.parse_args()
    unhealthy = int(args.images * args.unhealthy)
    print(f"/metrics at {args.images:,} images per site, {unhealthy:,} not healthy, 2 sites")
    holder: list[Metrics] = []

    def daemon() -> CollectorRegistry:
        holder.append(seeded(args.images, unhealthy))
        return holder[0].registry

    ours = measure(daemon, args.scrapes)
    base = measure(lambda: bare(args.images), args.scrapes)
    cycle = probe_cycle(holder[0], args.images, max(2, unhealthy))
    print(f"{'':<28} {'series':>9} {'memory MB':>10} {'text MB':>8} {'scrape s':>9}")
    for label, c in (("auditd's /metrics", ours), ("baseline: 1 series/image", base)):
        print(f"{label:<28} {c.series:>9,} {c.memory_mb:>10.1f} {c.text_mb:>8.2f} {c.scrape_s:>9.3f}")  # fmt: skip
    print(
        f"ratio to baseline            {ours.series / base.series:>9.2f}"
        f" {ours.memory_mb / base.memory_mb:>10.2f} {ours.text_mb / base.text_mb:>8.2f}"
        f" {ours.scrape_s / base.scrape_s:>9.2f}"
    )
    print(f"one probe cycle's updates    {cycle * 1000:.1f} ms")


if __name__ == "__main__":
    main()
