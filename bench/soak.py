#!/usr/bin/env python3
"""Soak (issue 24): `auditd run` for a long time at scale, sampled, with a verdict on drift.

The daemon runs as a subprocess, as in production, against two simulated clusters (the primary
holds N volumes: PVC + PV + VolumeReplication each, sized like real objects), a simulated `rbd`
per site (one pool of N healthy images, each status record rewritten every 30 s as rbd-mirror
does: auditd/sim/rbdpool.py) and a fake Slack. Steady churn meanwhile:

* ``--churn`` DR-relevant changes a second (a PVC's phase to Lost and back);
* violations opening and resolving: every 20 s a PVC of the same name appears on the secondary
  (pvc-on-secondary, its `for` cut to 30 s so that it fires and reaches Slack), removed 3 min later;
* a relist of every kind on both clusters every ``--relist-every`` (history compacted, watches
  dropped: the watchers get 410 Gone and list again);
* volumes coming and going: every ``--volume-every`` the oldest volume is deleted (its VR, PVC
  and PV, and its image from both sites' pools) and a new one created (image and objects), as
  applications are;
* a probe of both sites every ``--probe-interval``; retention pruning every minute with a
  short ``--keep``.

Every ``--sample-every`` it samples the daemon: RSS, open file descriptors, threads, database
size, transitions held, ingest queue depth, ingest delay (p99 of /metrics'
auditd_ingest_delay_seconds over the interval), the end-to-end latency of one marked change
(a PVC label written to the fake API server -> its transition committed), and the mean probe
duration. At the end: each figure's slope per hour after the warm-up (the first fifth), and a
verdict: RSS growth under 5% per 24 h extrapolated, no growth in fds or threads, latency flat,
database size bounded by retention (judged once the run is 3x --keep + 2 min long; RSS once 30
min are sampled after the warm-up). fds are judged by their median (a probe's pipes come and
go), threads by their maximum with what the pools may still start.

What grew, if anything: the daemon's census (SIGUSR2, auditd/daemon/census.py) is taken at the
warm-up's end and at the end (each, as every periodic one, at least half a relist interval after
the last relist: a census during one counts its pages), and the types whose count grew most are
printed, with pymalloc's blocks and glibc's heap (in use, and free but held). With ``--tracemalloc N`` the daemon runs
under tracemalloc (N frames; slower, more memory: do not judge RSS from that run) and the end's
census also names the allocation sites whose memory grew most since the warm-up's.

    python bench/soak.py [--duration 30m] [--volumes 10000] [--churn 10] [--db sqlite|postgresql]
                         [--relist-every 10m] [--probe-interval 60s] [--keep 10m]
                         [--sample-every 10s] [--volume-every 30s] [--tracemalloc N]
                         [--census-every 5m]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watch_scale import PG_URL, add_volume, populate, realistic_pvc, remove_volume

from auditd.daemon.census import growth
from auditd.durations import parse as parse_duration
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import free_port, pair_config_toml
from auditd.sources.kube.kinds import PVC

FAKE_RBD = [sys.executable, "-m", "auditd.sim.fakerbd"]
SECONDARY_EVERY = 20.0  # s between PVCs appearing on the secondary
SECONDARY_FOR = 180.0  # s each stays there
CENSUS = "census "  # the daemon's log line on SIGUSR2
PRUNE_EVERY = 60.0  # s, retention.every
SCRAPE_TIMEOUT = 30.0  # s
PROBE_CONCURRENT = 4  # probe.max_concurrent: each site's probe pool holds up to this many threads
# Thread pools start their threads only when work overlaps, so a daemon that leaks nothing can
# still gain a few threads late in a run: APScheduler's default pool (2) and each site's probe
# pool. Growth past what they can add is a leak.
POOL_THREADS = 2 + 2 * PROBE_CONCURRENT


@dataclass
class Sample:
    t: float  # seconds since the daemon was synced
    rss_mb: float
    anon_mb: float  # RSS in anonymous memory: the heaps, pymalloc's arenas, stacks
    file_mb: float  # RSS in mapped files and shared memory (SQLite's -shm, libraries)
    fds: int
    threads: int
    db_mb: float
    transitions: int
    queue: float | None  # None when /metrics did not answer (as the next two)
    delay_p99: float | None  # s, from the daemon's histogram over the interval
    e2e: float | None  # s, one marked change, None when it did not commit within 30 s
    probe_s: float | None  # mean probe duration over the interval


@dataclass
class Scrape:
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    probe_sum: float = 0.0
    probe_count: float = 0.0
    queue: float = 0.0


def scrape(port: int) -> Scrape | None:
    """The daemon's /metrics, or None when it did not answer within SCRAPE_TIMEOUT: a sample
    missed (printed as such), never the end of a run. Under --tracemalloc on a busy machine,
    the first scrape after a 5,000-volume sync took more than 10 s (2026-12-07)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT
        ) as resp:
            body = resp.read().decode()
    except OSError as e:  # URLError, a timeout, a refused or reset connection
        print(f"  /metrics did not answer: {e}", flush=True)
        return None
    out = Scrape()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "auditd_ingest_delay_seconds_bucket":
                out.buckets[float(s.labels["le"])] = s.value
            elif s.name == "auditd_probe_duration_seconds_sum" and s.labels.get("kind") == "status":
                out.probe_sum += s.value
            elif (
                s.name == "auditd_probe_duration_seconds_count" and s.labels.get("kind") == "status"
            ):
                out.probe_count += s.value
            elif s.name == "auditd_ingest_queue_items":
                out.queue = s.value
    return out


def p99(before: Scrape, after: Scrape) -> float | None:
    """The 99th percentile of the batches committed between two scrapes (a bucket's bound)."""
    counts = sorted((le, after.buckets[le] - before.buckets.get(le, 0.0)) for le in after.buckets)
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None
    return next(le for le, n in counts if n >= 0.99 * total)


def proc_status(pid: int) -> tuple[float, float, float, int, int]:
    """RSS, its anonymous part and its file-backed part (MB), open fds, threads."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def mb(name: str) -> float:
        return int(fields[name].split()[0]) / 1024

    return (
        mb("VmRSS"),
        mb("RssAnon"),
        mb("RssFile") + mb("RssShmem"),
        len(os.listdir(f"/proc/{pid}/fd")),
        int(fields["Threads"]),
    )


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] / 3600 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


class Churn:
    """The steady changes a production pair sees, written through the fake API servers."""

    def __init__(
        self,
        dr1: FakeKubeAPI,
        dr2: FakeKubeAPI,
        volumes: int,
        sites: list[Path],
        volume_every: float,
        seed: int = 7,
    ) -> None:
        self.dr1, self.dr2, self.volumes = dr1, dr2, volumes
        self.sites, self.volume_every = sites, volume_every
        self.rng = random.Random(seed)
        self.lo, self.hi = 0, volumes  # the volumes that exist: lo to hi - 1
        self.lost: dict[int, float] = {}  # volume -> when it is set Bound again
        self.on_secondary: dict[int, float] = {}  # volume -> when its secondary PVC goes
        self.next_secondary = 0.0
        self.next_volume = 0.0
        self.changes = 0
        self.replaced = 0

    def live(self, n: int) -> int:
        """The n-th pick among the volumes that exist now, spread over all of them."""
        return self.lo + (n * 7919) % self.volumes

    def step(self, now: float) -> None:
        i = self.rng.randrange(self.lo, self.hi)
        if i in self.lost or i in self.on_secondary:
            return
        self._phase(i, "Lost")
        self.lost[i] = now + 30

    def due(self, now: float) -> None:
        for i in [i for i, at in self.lost.items() if at <= now]:
            self._phase(i, "Bound")
            del self.lost[i]
        for i in [i for i, at in self.on_secondary.items() if at <= now]:
            obj = realistic_pvc(i)["metadata"]
            self.dr2.delete(PVC, obj["namespace"], obj["name"])
            del self.on_secondary[i]
        if now >= self.next_secondary:
            i = self.rng.randrange(self.lo, self.hi)
            if i not in self.on_secondary and i not in self.lost:
                meta = realistic_pvc(i)["metadata"]
                self.dr2.create(PVC, objects.pvc(meta["name"], meta["namespace"]))
                self.on_secondary[i] = now + SECONDARY_FOR
            self.next_secondary = now + SECONDARY_EVERY
        if self.volume_every and now >= self.next_volume:
            self._replace_oldest()
            self.next_volume = now + self.volume_every

    def _replace_oldest(self) -> None:
        """An application deleted and another created: the oldest volume goes (its objects,
        then its image on both sites) and a new one comes (its image, then its objects)."""
        old = self.lo
        if old in self.lost or old in self.on_secondary:
            return  # busy with another change: next turn
        remove_volume(self.dr1, old)
        self.lo, self.hi = self.lo + 1, self.hi + 1
        for d in self.sites:
            (d / "images").write_text(f"{self.lo} {self.hi}")
        add_volume(self.dr1, self.hi - 1)
        self.replaced += 1

    def _phase(self, i: int, phase: str) -> None:
        obj = realistic_pvc(i)
        obj["status"]["phase"] = phase
        self.dr1.replace(PVC, obj)
        self.changes += 1


def marked_change(dr1: FakeKubeAPI, engine: Engine, n: int, i: int) -> float | None:
    """Volume i's PVC label written, then the time until its transition is committed."""
    obj = realistic_pvc(i)
    mark = f"soak-{n}"
    obj["metadata"]["labels"] = {**obj["metadata"]["labels"], "soak": mark}
    t0 = time.monotonic()
    dr1.replace(PVC, obj)
    with engine.connect() as c:
        while time.monotonic() - t0 < 30:
            found = c.execute(
                text(
                    "SELECT 1 FROM transitions WHERE cluster = 'dr1' AND kind = :k AND "
                    "namespace = :ns AND name = :name AND field = 'labels' AND new LIKE :m"
                ),
                {
                    "k": PVC.kind,
                    "ns": obj["metadata"]["namespace"],
                    "name": obj["metadata"]["name"],
                    "m": f'%"{mark}"%',
                },
            ).first()
            if found is not None:
                return time.monotonic() - t0
            c.rollback()
            time.sleep(0.02)
    return None


def db_size_mb(engine: Engine, path: Path | None, schema: str | None) -> tuple[float, int]:
    with engine.connect() as c:
        rows = int(c.execute(text("SELECT count(*) FROM transitions")).scalar_one())
        if schema is not None:
            size = c.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind = 'r'"
                ),
                {"s": schema},
            ).scalar_one()
            return float(size) / 2**20, rows
    assert path is not None
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return total / 2**20, rows


def site(root: Path, cluster: str, name: str, images: int) -> dict[str, object]:
    d = root / name
    d.mkdir()
    (d / "ceph.conf").write_text("[global]\n")
    # Pool info and the snapshot schedule (the slow probe) from the real captures.
    fixtures = Path(__file__).resolve().parent.parent / "tests" / "data" / "rbd"
    for key, value in (
        ("site", name),
        ("cluster", cluster),
        ("scenario", "synthetic"),
        ("fixtures", str(fixtures)),
    ):
        (d / key).write_text(value)
    (d / "images").write_text(str(images))
    return {"conf": str(d / "ceph.conf"), "user": "auditd", "rbd_command": FAKE_RBD}


def verdicts(samples: list[Sample], keep_s: float) -> list[tuple[str, str, bool | None]]:
    """(figure, what was seen, passed; None when the run is too short to say)."""
    if len(samples) < 6:
        return [("all", f"{len(samples)} samples: too few to judge", None)]
    warm = samples[len(samples) // 5 :]
    third = max(len(warm) // 3, 1)
    first, last = warm[:third], warm[-third:]
    hours = (warm[-1].t - warm[0].t) / 3600
    out: list[tuple[str, str, bool | None]] = []
    rss = [(s.t, s.rss_mb) for s in warm]
    rss_slope = slope_per_hour(rss)
    rss_day = 100 * rss_slope * 24 / statistics.fmean(s.rss_mb for s in warm)
    # Each half's own slope beside the whole's: an allocator settling to its high-water mark
    # climbs less and less (stop 43's 130 minutes: +25 MB in the first 20, +10 in the next
    # 100), a leak at the same pace. The verdict stays the whole's: a run long enough to see
    # the settling is what says which.
    halves = slope_per_hour(rss[: len(rss) // 2]), slope_per_hour(rss[len(rss) // 2 :])
    # Caches and the allocator settle over minutes: a shorter run says nothing about a day.
    long_enough = hours >= 0.5
    out.append(
        (
            "RSS",
            f"{rss_slope:+.1f} MB/h, {rss_day:+.1f}% per 24 h"
            f" (first half {halves[0]:+.1f}, second half {halves[1]:+.1f} MB/h)"
            + ("" if long_enough else " (not judged under 30 min)"),
            rss_day < 5 if long_enough else None,
        )
    )
    # fds come and go with each probe's pipes and each watch's reconnect: one sample's spike
    # is not a leak, a climb of the typical count is. Threads are bounded by the pools instead.
    a, b = statistics.median(s.fds for s in first), statistics.median(s.fds for s in last)
    peaks = f"max {max(s.fds for s in first)} and {max(s.fds for s in last)}"
    out.append(("fds", f"median {a:g} first third, {b:g} last third ({peaks})", b <= a + 2))
    a, b = max(s.threads for s in first), max(s.threads for s in last)
    out.append(
        (
            "threads",
            f"max {a} first third, {b} last third (pools may start {POOL_THREADS} more)",
            b <= a + POOL_THREADS,
        )
    )
    e2e_a = [s.e2e for s in first if s.e2e is not None]
    e2e_b = [s.e2e for s in last if s.e2e is not None]
    lost = sum(1 for s in warm if s.e2e is None)
    if e2e_a and e2e_b:
        a, b = max(e2e_a), max(e2e_b)
        out.append(
            (
                "change -> commit",
                f"worst {a:.2f} s first third, {b:.2f} s last third, {lost} over 30 s",
                b <= 2 * a + 0.25 and lost == 0,
            )
        )
    delays_a = [s.delay_p99 for s in first if s.delay_p99 is not None]
    delays_b = [s.delay_p99 for s in last if s.delay_p99 is not None]
    if delays_a and delays_b:
        a, b = statistics.median(delays_a), statistics.median(delays_b)
        out.append(
            ("ingest delay p99", f"median {a:g} s first third, {b:g} s last", b <= 2 * a + 0.25)
        )
    probes_a = [s.probe_s for s in first if s.probe_s is not None]
    probes_b = [s.probe_s for s in last if s.probe_s is not None]
    if probes_a and probes_b:
        a, b = statistics.fmean(probes_a), statistics.fmean(probes_b)
        out.append(("probe duration", f"{a:.2f} s first third, {b:.2f} s last", b <= 1.5 * a + 0.5))
    span = samples[-1].t
    if span >= 3 * keep_s + 2 * PRUNE_EVERY:
        # By then pruning (every minute) has been removing as much as comes in for a keep.
        settled = [s for s in samples if s.t >= 2 * keep_s + PRUNE_EVERY]
        grew = slope_per_hour([(s.t, s.db_mb) for s in settled])
        mean = statistics.fmean(s.db_mb for s in settled)
        rows = slope_per_hour([(s.t, s.transitions) for s in settled])
        out.append(
            (
                "database",
                f"{grew:+.1f} MB/h on {mean:.0f} MB, transitions {rows:+,.0f}/h, past 2x keep",
                grew * min(hours, 1) <= 0.1 * mean,
            )
        )
    else:
        out.append(("database", f"run {span:.0f} s < 3x keep + 2 min: bound not judged", None))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", default="30m")
    ap.add_argument("--volumes", type=int, default=10_000)
    ap.add_argument("--churn", type=float, default=10.0, help="changes per second")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--relist-every", default="10m")
    ap.add_argument("--probe-interval", default="60s")
    ap.add_argument("--keep", default="10m")
    ap.add_argument("--sample-every", default="10s")
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="N",
        help="run the daemon under tracemalloc with N frames, so that the census names the"
        " allocation sites that grew (slower: not a run to judge RSS by)",
    )
    ap.add_argument(
        "--volume-every",
        default="30s",
        help="replace the oldest volume with a new one this often (0: never)",
    )
    ap.add_argument(
        "--census-every",
        default="0",
        help="also take the daemon's census this often and print its totals, to see when what"
        " it holds grows (0: only after the warm-up and at the end)",
    )
    args = ap.parse_args()
    volume_every = parse_duration(args.volume_every).total_seconds()
    duration = parse_duration(args.duration).total_seconds()
    relist = parse_duration(args.relist_every).total_seconds()
    every = parse_duration(args.sample_every).total_seconds()
    keep = parse_duration(args.keep)
    work = Path(tempfile.mkdtemp(prefix="auditd-soak-"))
    dr1 = FakeKubeAPI("dr1", bookmark_interval=30).start()
    dr2 = FakeKubeAPI("dr2", bookmark_interval=30).start()
    slack = FakeSlack().start()
    schema = None
    proc = None
    try:
        populate(dr1, args.volumes)
        kc = work / "kubeconfig"
        write_kubeconfig(str(kc), {"dr1": dr1.url, "dr2": dr2.url})
        db_path = work / "auditd.db" if args.db == "sqlite" else None
        if db_path is not None:
            url = f"sqlite:///{db_path}"
        else:
            schema = f"auditd_soak_{uuid.uuid4().hex[:8]}"
            with create_engine(PG_URL, isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        port = free_port()
        ceph = {
            "dr1": site(work, "dr1", "site-a", args.volumes),
            "dr2": site(work, "dr2", "site-b", args.volumes),
        }
        cfg = work / "auditd.toml"
        cfg.write_text(
            pair_config_toml(
                kc,
                url,
                data_dir=work / "data",
                log_level="WARNING",
                pools=("replicapool",),
                ceph=ceph,
                slack_base_url=slack.base_url,
                sections={
                    "ops": {"listen": f"127.0.0.1:{port}"},
                    "probe": {
                        "interval": args.probe_interval,
                        "jitter": "0s",
                        "max_concurrent": PROBE_CONCURRENT,
                    },
                    "retention": {
                        "keep": args.keep,
                        "keep_samples": args.keep,
                        "every": f"{PRUNE_EVERY:g}s",
                        "pause": "50ms",
                    },
                    "rules.pvc-on-secondary": {"for": "30s"},
                },
            )
        )
        log = open(work / "daemon.log", "w")  # noqa: SIM115 - the daemon's whole life
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditd", "run", "-c", str(cfg)],
            stderr=log,
            env={
                **os.environ,
                "AUDITD_SLACK_TOKEN": slack.token,
                **({"AUDITD_TRACEMALLOC": str(args.tracemalloc)} if args.tracemalloc else {}),
            },
        )
        t_start = time.monotonic()
        # Traced, every allocation costs a lookup: the first list takes minutes, not seconds.
        synced = wait_synced(url, 3 * args.volumes, proc, 1800 if args.tracemalloc else 300)
        print(
            f"soak: {args.volumes:,} volumes (one replaced every {args.volume_every}),"
            f" {args.churn:g} changes/s, relist every "
            f"{args.relist_every}, probe every {args.probe_interval}, keep {args.keep}, "
            f"{args.db}, for {args.duration} (synced in {synced - t_start:.1f} s)",
            flush=True,
        )
        churn = Churn(dr1, dr2, args.volumes, [work / "site-a", work / "site-b"], volume_every)
        samples, censuses = run(
            proc, churn, args, url, db_path, schema, port, duration, relist, every, work
        )
        print(
            f"\nvolumes replaced: {churn.replaced}; Slack messages: {len(slack.messages)};"
            f" daemon log: {work / 'daemon.log'}"
        )
        if proc.poll() is not None:
            print(f"soak: the daemon exited with {proc.returncode}")
            return 1
        report(samples, keep.total_seconds())
        before, after = [*censuses, None, None][:2]
        if before is not None and after is not None:
            print("\nheld by the daemon, after the warm-up -> at the end (its census, SIGUSR2):")
            print("\n".join(growth(before, after)))
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        dr1.stop()
        dr2.stop()
        slack.stop()
        if schema is not None:
            with create_engine(PG_URL, isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def census(proc: subprocess.Popen[bytes], log_path: Path) -> dict[str, Any] | None:
    """Ask the daemon for a census (SIGUSR2: auditd/daemon/census.py) and read it from its log."""
    seen = log_path.read_text(errors="replace").count(CENSUS)
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if CENSUS in ln]
        if len(lines) > seen:
            return cast(dict[str, Any], json.loads(lines[-1].split(CENSUS, 1)[1]))
        time.sleep(0.5)
    return None


def wait_synced(
    url: str, objects_: int, proc: subprocess.Popen[bytes], within: float = 300
) -> float:
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode} before its sync")
            try:
                with engine.connect() as c:
                    n = c.execute(
                        text("SELECT count(*) FROM objects WHERE kind <> 'AuditStream'")
                    ).scalar_one()
                if n >= objects_:
                    return time.monotonic()
            except Exception:  # the schema is not there yet
                pass
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise SystemExit(f"no initial sync within {within:.0f} s")


def run(
    proc: subprocess.Popen[bytes],
    churn: Churn,
    args: argparse.Namespace,
    url: str,
    db_path: Path | None,
    schema: str | None,
    port: int,
    duration: float,
    relist: float,
    every: float,
    work: Path,
) -> tuple[list[Sample], list[dict[str, Any] | None]]:
    dr1, dr2 = churn.dr1, churn.dr2
    t0 = time.monotonic()
    next_sample, next_relist, n = t0, t0 + relist, 0
    last_relist = t0

    def settled(now: float) -> bool:
        # Half a relist interval after the last one: its pages are decoded and gone. A census
        # taken during a relist counts them (stop 42's warm-up and end censuses both did, and
        # compared two peaks).
        return not relist or now - last_relist >= relist / 2

    before = scrape(port)
    samples: list[Sample] = []
    censuses: list[dict[str, Any] | None] = []
    census_every = parse_duration(args.census_every).total_seconds()
    next_census = t0 + census_every if census_every else float("inf")
    print(
        f"\n{'min':>6} {'RSS MB':>7} {'anon':>5} {'file':>5} {'fds':>4} {'thr':>4} {'DB MB':>7} {'transitions':>11}"
        f" {'queue':>5} {'delay p99':>9} {'change->commit':>14} {'probe s':>7}",
        flush=True,
    )
    # One engine for the whole run: the soak should not add connection churn to what it measures.
    engine = create_engine(url)
    try:
        while (now := time.monotonic()) - t0 < duration and proc.poll() is None:
            churn.due(now)
            # The warm-up's end, as verdicts(), at the first settled moment after it.
            if not censuses and now - t0 >= duration / 5 and settled(now):
                censuses.append(census(proc, work / "daemon.log"))
            if now >= next_census and settled(now):
                taken = census(proc, work / "daemon.log")
                print(census_line(now - t0, taken, censuses[0] if censuses else None), flush=True)
                next_census = now + census_every
            if now >= next_relist:
                for api in (dr1, dr2):
                    api.compact()
                    api.drop_watches()
                next_relist, last_relist = now + relist, now
            if now >= next_sample:
                n += 1
                e2e = marked_change(dr1, engine, n, churn.live(n))
                rss, anon, file, fds, threads = proc_status(proc.pid)
                db_mb, rows = db_size_mb(engine, db_path, schema)
                # A scrape missed leaves this sample's /metrics figures empty; the next one
                # that answers spans both intervals.
                after = scrape(port)
                queue = delay = probe_s = None
                if after is not None and before is not None:
                    queue, delay = after.queue, p99(before, after)
                    probes = after.probe_count - before.probe_count
                    if probes:
                        probe_s = (after.probe_sum - before.probe_sum) / probes
                before = after or before
                s = Sample(
                    now - t0, rss, anon, file, fds, threads, db_mb, rows, queue, delay, e2e, probe_s
                )
                samples.append(s)
                print(format_row(s), flush=True)
                next_sample = now + every
            churn.step(now)
            time.sleep(max(0.0, 1 / args.churn - (time.monotonic() - now)))
        if censuses and proc.poll() is None:
            # The end's census, once a relist just made is settled (churn paused meanwhile).
            time.sleep(max(0.0, last_relist + relist / 2 - time.monotonic()) if relist else 0.0)
            censuses.append(census(proc, work / "daemon.log"))
    finally:
        engine.dispose()
    return samples, censuses


# A census holding this much more than the warm-up's is a peak: what it is made of is printed.
PEAK = 1.1


def census_line(t: float, taken: dict[str, Any] | None, warm: dict[str, Any] | None = None) -> str:
    """One census's totals as a line between the samples: which of Python's objects, its
    allocator's blocks and arenas, or glibc's heap (in use, mmapped, free but held) moves with
    RSS's anonymous part. A census catching a peak (PEAK times the warm-up's objects) also
    names the types that grew since the warm-up: the arenas' high-water mark steps up at peaks,
    and their totals alone do not say what was in flight."""
    if taken is None:
        return f"{t / 60:6.1f} census: no answer"
    peak = ""
    if warm is not None and taken["objects"] >= PEAK * warm["objects"]:
        grew = growth(warm, {**taken, "allocations": None}, top=5)
        types = [line.strip() for line in grew if line.startswith("  ")]
        peak = "\n         a peak; grew since the warm-up: " + "; ".join(types)
    mb = {
        k: (taken.get(k) or 0) / 2**20
        for k in (
            *("heap_in_use", "heap_mmapped", "heap_free_held", "sqlite_in_use"),
            *("pymalloc_held", "pymalloc_in_blocks"),
        )
    }
    return (
        f"{t / 60:6.1f} census: {taken['objects']:,} objects, {taken['py_blocks']:,} pymalloc"
        f" blocks ({mb['pymalloc_in_blocks']:.0f} MB) in {mb['pymalloc_held']:.0f} MB of arenas;"
        f" glibc heap {mb['heap_in_use']:.0f} MB in use, {mb['heap_mmapped']:.0f} MB mmapped,"
        f" {mb['heap_free_held']:.0f} MB free but held (SQLite holds {mb['sqlite_in_use']:.0f} MB"
        f" of what is in use){peak}"
    )


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_row(s: Sample) -> str:
    return (
        f"{s.t / 60:6.1f} {s.rss_mb:7.0f} {s.anon_mb:5.0f} {s.file_mb:5.0f} {s.fds:4d} {s.threads:4d} {s.db_mb:7.1f}"
        f" {s.transitions:11,d} {_opt(s.queue, '5.0f'):>5} {_opt(s.delay_p99, '8g'):>9}"
        f" {_opt(s.e2e, '13.2f'):>14} {_opt(s.probe_s, '7.2f'):>7}"
    )


def report(samples: list[Sample], keep_s: float) -> None:
    warm = samples[len(samples) // 5 :]
    print("\nslope per hour after the warm-up (the first fifth):")
    series: list[tuple[str, Callable[[Sample], float | None]]] = [
        ("RSS MB", lambda s: s.rss_mb),
        ("  of it anonymous", lambda s: s.anon_mb),
        ("  of it files, shm", lambda s: s.file_mb),
        ("fds", lambda s: s.fds),
        ("threads", lambda s: s.threads),
        ("database MB", lambda s: s.db_mb),
        ("transitions held", lambda s: s.transitions),
        ("queue items", lambda s: s.queue),
        ("ingest delay p99 s", lambda s: s.delay_p99),
        ("change -> commit s", lambda s: s.e2e),
        ("probe duration s", lambda s: s.probe_s),
    ]
    for name, get in series:
        points = [(s.t, v) for s in warm if (v := get(s)) is not None]
        if points:
            print(f"  {name:20} {slope_per_hour(points):+12.3f}  (last {points[-1][1]:g})")
    print("\nverdict:")
    results = verdicts(samples, keep_s)
    for figure, seen, ok in results:
        word = "n/a" if ok is None else "ok" if ok else "DRIFT"
        print(f"  {figure:18} {word:5}  {seen}")
    judged = [ok for _, _, ok in results if ok is not None]
    print("soak:", "no drift" if judged and all(judged) else "DRIFT" if judged else "not judged")


if __name__ == "__main__":
    raise SystemExit(main())
