#!/usr/bin/env python3
"""RBD probe benchmark (issue 4).

Builds `rbd mirror pool status --verbose --format json` output for N images from the real
capture's shape (tests/data/rbd/healthy), then measures per probe cycle:

* parse (parse_pool_status) and classify + facts for every image, against the raw baseline of
  json.loads of the same bytes;
* an unchanged cycle through the inventory (no transitions) and a cycle where every image changed;
* peak memory of one cycle (tracemalloc);
* calls per cycle: one `mirror pool status` per pool and site, against the seed's way of one
  `rbd mirror image status` per image; with the Ceph lab up, the real latency of both calls.

    python bench/rbd_parse.py [--images 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from auditd.inventory.inventory import Inventory
from auditd.inventory.rbd_facts import image_facts
from auditd.sources.rbd.parse import classify, parse_pool_status
from auditd.sources.rbd.probe import ProbeResult

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "data" / "rbd" / "healthy" / "site-b-mirror-pool-status-verbose.json"


def synthesize(n: int, state: str = "up+replaying") -> bytes:
    doc = json.loads(CAPTURE.read_text())
    template = doc["images"][0]
    images = []
    for i in range(n):
        img = json.loads(json.dumps(template))
        img["name"] = f"csi-vol-{i:05d}"
        img["global_id"] = f"{i:08x}-a2af-4f92-81d1-62291b44b803"
        img["state"] = state
        images.append(img)
    doc["images"] = images
    doc["summary"]["states"] = {state.split("+")[1]: n}
    return json.dumps(doc).encode()


def best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def traced(fn: Callable[[], object]) -> tuple[int, int]:
    """Bytes still held by what ``fn`` returned (kept until measured), and the peak while it ran."""
    tracemalloc.start()
    try:
        kept = fn()
        held, peak = tracemalloc.get_traced_memory()
        del kept
        return held, peak
    finally:
        tracemalloc.stop()


def lab_latency() -> tuple[float, float] | None:
    base = Path(os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    if not (base / ".up").exists():
        return None
    conf = str(base / "site-b" / "auditd.conf")

    def run(*args: str) -> float:
        t = time.perf_counter()
        subprocess.run(
            ["rbd", "--conf", conf, "--id", "auditd", *args],
            capture_output=True,
            check=False,
            timeout=60,
        )
        return time.perf_counter() - t

    pool = min(
        run("mirror", "pool", "status", "replicapool", "--verbose", "--format", "json")
        for _ in range(3)
    )
    image = min(
        run("mirror", "image", "status", "replicapool/csi-vol-0001", "--format", "json")
        for _ in range(3)
    )
    return pool, image


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    n = args.images
    data = synthesize(n)
    changed = synthesize(n, "up+syncing")
    status = parse_pool_status(data)
    at = max(i.local.last_update for i in status.images if i.local.last_update) + timedelta(
        seconds=5
    )
    stale = timedelta(minutes=3)

    t_json = best(lambda: json.loads(data))
    t_parse = best(lambda: parse_pool_status(data))
    t_facts = best(lambda: [image_facts(i, at, stale) for i in status.images])
    t_classify = best(lambda: [classify(i, at, stale) for i in status.images])

    inv = Inventory()
    first = ProbeResult("dr2", "replicapool", "status", at, 0.0, status=status)
    inv.apply_probe(first, stale)
    t_same = best(lambda: inv.apply_probe(first, stale))
    other = ProbeResult("dr2", "replicapool", "status", at, 0.0, status=parse_pool_status(changed))
    t = time.perf_counter()
    changes = len(inv.apply_probe(other, stale).transitions)
    t_changed = time.perf_counter() - t

    # What a parsed status holds while it waits in the ingest queue (one per pool and site per
    # cycle, two sites probed at once), against the decoded document kept as it is.
    doc_kept, _ = traced(lambda: json.loads(data))
    status_kept, _ = traced(lambda: parse_pool_status(data))
    _, peak = traced(
        lambda: Inventory().apply_probe(
            ProbeResult("dr2", "replicapool", "status", at, 0.0, status=parse_pool_status(data)),
            stale,
        )
    )

    print(f"rbd probe cycle for {n:,} images ({len(data) / 1e6:.1f} MB of --verbose JSON)\n")
    print(f"  json.loads of the same bytes (baseline) {t_json * 1000:8.1f} ms")
    print(
        f"  parse_pool_status                       {t_parse * 1000:8.1f} ms  ({t_parse / t_json:.1f}x baseline)"
    )
    print(f"  classify every image                    {t_classify * 1000:8.1f} ms")
    print(f"  facts of every image                    {t_facts * 1000:8.1f} ms")
    print(f"  inventory, unchanged cycle              {t_same * 1000:8.1f} ms  (0 transitions)")
    print(
        f"  inventory, every image changed          {t_changed * 1000:8.1f} ms  ({changes:,} transitions)"
    )
    print(
        f"  peak memory of a first cycle            {peak / 1e6:8.1f} MB  ({peak / n:.0f} B per image)"
    )
    print(
        f"  a parsed status, held until taken in    {status_kept / 1e6:8.1f} MB  ({status_kept / n:.0f} B"
        f" per image; the decoded JSON kept: {doc_kept / 1e6:.1f} MB, {doc_kept / n:.0f} B)"
    )
    print("\ncalls per cycle, per site and pool:")
    print(f"  auditd (mirror pool status --verbose)   {1:8d}")
    print(f"  seed's way (mirror image status each)   {n:8,d}")
    lat = lab_latency()
    if lat:
        pool, image = lat
        print(
            f"\nreal Ceph lab: one pool status call {pool * 1000:.0f} ms; one image status call {image * 1000:.0f} ms"
        )
        print(
            f"  per-image way for {n:,} images: ~{image * n / 60:.0f} min of rbd calls per cycle, "
            f"against {pool * 1000:.0f} ms + {t_parse * 1000:.0f} ms parse"
        )
    else:
        print("\n(Ceph lab not up: scripts/ceph-lab.sh up adds the real per-call latency)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
