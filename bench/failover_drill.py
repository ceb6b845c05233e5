"""A long DR drill on the real two-site Ceph lab: false alarms, misses, detection and RTO.

    scripts/ceph-lab.sh up
    .venv/bin/python bench/failover_drill.py --cycles 100               # 200 switches, hours
    .venv/bin/python bench/failover_drill.py --cycles 3 --images 16 --intervals 60,10

Two `auditd run` processes (one per probe interval) watch an application of --images volumes
(tests/ceph_drill.py) through:

1. Ramen-style failovers and failbacks: the failover with every step for all volumes at once,
   the failback staggered (one volume's demote and promote after another), every third switch
   with a DRPC in Relocating/FailingOver. Any violation or Slack post is a false alarm.
2. A site loss (--no-site-loss to skip): the primary site's mon, mgr and rbd-mirror frozen and
   its API server stopped; the survivor force-promoted and its PVC/PV/VRs created. Expected:
   audit-blind-spot and old-primary-not-fenced (pool-mirroring-unhealthy allowed); anything else
   is a false alarm, a missing one a miss. Then the site returns un-fenced: split brain must
   fire (detection time from the return), and after Ramen's recovery everything resolves.
3. A forced promotion with both sites up: split brain must fire (detection from the promote).

Prints per daemon: false alarms, misses, detection times, and RTO percentiles as auditd recorded
them against the switches' real durations (the baseline, printed first). A miss is also a
planned switch that is not one ended episode per volume, from the old primary to the new, with
an RTO within the switch's real duration plus a probe cycle. Exit 1 on any false alarm or miss:
CI runs it as the planned-switch drill (tests/system/test_bench_smoke.py). The lab is left
split-brained on the first image by step 3 (--no-forced to skip it): `scripts/ceph-lab.sh down
&& up` to reset.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ceph_drill import IMAGE, POOL, Drill, Lab, Watcher, app_images
from ceph_drill import wait_for as wait
from sqlalchemy import select

from auditd.store.models import ViolationRow

EXPECTED_LOSS = {"audit-blind-spot", "old-primary-not-fenced"}
ALLOWED_LOSS = EXPECTED_LOSS | {"pool-mirroring-unhealthy"}


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))]:.0f}s"


def rules(drill: Drill, w: Watcher) -> set[str]:
    return {r for r, _, _ in drill.fired(w)}


def split_brains(w: Watcher) -> int:
    """How many split-brain violations have fired (a volume's earlier one is another row)."""
    with w.session() as s:
        return len(
            s.scalars(
                select(ViolationRow.id).where(
                    ViolationRow.rule == "split-brain", ViolationRow.fired_at.is_not(None)
                )
            ).all()
        )


def firing(w: Watcher) -> list[str]:
    with w.session() as s:
        return [
            v.rule for v in s.scalars(select(ViolationRow).where(ViolationRow.state == "firing"))
        ]


def episode_misses(drill: Drill, w: Watcher, images: tuple[str, ...]) -> list[str]:
    """Each planned switch must be one episode per volume, in order, from the old primary to
    the new, ended, with an RTO (VR to secondary .. new PVC Bound on a primary image, as the
    daemon saw it) within the switch's real duration plus one probe cycle and 10 s."""
    planned = [e for e in drill.episodes(w) if e.trigger != "forced, peer lost"]
    out = []
    for image in images:
        mine = [e for e in planned if e.image == image]
        if len(mine) != len(drill.switches):
            out.append(f"{image}: {len(mine)} episodes for {len(drill.switches)} switches")
            continue
        for i, (e, s) in enumerate(zip(mine, drill.switches, strict=True), 1):
            limit = (s.settled - s.started) + w.interval + 10
            if (e.from_cluster, e.to_cluster) != (s.old, s.new):
                out.append(f"switch {i} {image}: episode {e.from_cluster}->{e.to_cluster}")
            elif e.ended_at is None or e.rto_seconds is None:
                out.append(f"switch {i} {image}: episode never ended")
            elif not 0 < e.rto_seconds <= limit:
                out.append(f"switch {i} {image}: RTO {e.rto_seconds:.0f}s, over {limit:.0f}s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100, help="failover+failback cycles")
    ap.add_argument("--intervals", default="60,10", help="probe intervals, one daemon each")
    ap.add_argument(
        "--settle",
        type=int,
        help="seconds to wait after the last planned switch for a late false alarm (default: "
        "two of the slowest probe cycles; each switch is already followed by one and 10 s)",
    )
    ap.add_argument("--images", type=int, default=16, help="volumes of the application")
    ap.add_argument("--no-site-loss", dest="site_loss", action="store_false")
    ap.add_argument(
        "--no-forced", dest="forced", action="store_false", help="skip step 3 (the lab stays whole)"
    )
    ap.add_argument("--lab", default=os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    args = ap.parse_args()
    lab = Lab(Path(args.lab))
    lab.wait_steady("dr1")
    images = app_images(args.images)
    lab.ensure_images(images)
    intervals = tuple(int(i) for i in args.intervals.split(","))
    work = Path(tempfile.mkdtemp(prefix="auditd-drill-"))
    drill = Drill(lab, work, intervals=intervals, images=images)
    names = [f"probe-{i}s" for i in intervals]
    false_alarms: dict[str, list[str]] = {n: [] for n in names}
    misses: dict[str, list[str]] = {n: [] for n in names}
    detected: dict[str, dict[str, float | None]] = {n: {} for n in names}
    began = time.monotonic()
    try:
        drill.start()
        time.sleep(20)
        for i in range(2 * args.cycles):
            s = drill.switch(drpc=i % 3 == 1, stagger=i % 2 == 1)
            # The slower daemon looks at the settled pair before the next switch.
            time.sleep(max(intervals) + 10)
            how = "staggered" if i % 2 == 1 else "together"
            print(
                f"switch {i + 1}/{2 * args.cycles} {s.old}->{s.new} {how}"
                f"{' drpc ' + s.drpc if s.drpc else ''}: {s.settled - s.started:.0f}s",
                flush=True,
            )
        time.sleep(2 * max(intervals) + 5 if args.settle is None else args.settle)
        for w in drill.watchers:
            false_alarms[w.name] += [f"planned: {r} {s}" for r, s, _ in drill.fired(w)]
        posts_planned = len(drill.slack_messages())

        if args.site_loss:
            lost, survivor = drill.primary, "dr2" if drill.primary == "dr1" else "dr1"
            before = {w.name: rules(drill, w) for w in drill.watchers}
            loss = time.monotonic()
            drill.lose_site(lost)
            drill.fail_over_to(survivor)
            wait(lambda: all(rules(drill, w) >= EXPECTED_LOSS for w in drill.watchers), 420, 5)
            time.sleep(30)
            for w in drill.watchers:
                during = rules(drill, w) - before[w.name]
                false_alarms[w.name] += [f"site loss: {r}" for r in sorted(during - ALLOWED_LOSS)]
                misses[w.name] += [f"site loss: {r}" for r in sorted(EXPECTED_LOSS - during)]
            print(f"site lost for {time.monotonic() - loss:.0f}s", flush=True)
            back = time.monotonic()
            drill.return_site(lost)
            pending = {w.name: w for w in drill.watchers}
            deadline = time.monotonic() + 2 * max(intervals) + 120
            while pending and time.monotonic() < deadline:
                for name, w in list(pending.items()):
                    if "split-brain" in rules(drill, w):
                        detected[name]["return"] = time.monotonic() - back
                        del pending[name]
                time.sleep(1)
            for name in pending:
                misses[name].append("split brain on the lost site's return")
            drill.recover(lost)
            wait(lambda: all(firing(w) == [] for w in drill.watchers), 2 * max(intervals) + 120)
            for w in drill.watchers:
                misses[w.name] += [f"still firing after recovery: {r}" for r in firing(w)]
            drill.switch()  # fail back

        if args.forced:
            time.sleep(max(intervals) + 10)
            # Counted, not compared: the site loss's return already fired one for the same volume.
            seen = {w.name: split_brains(w) for w in drill.watchers}
            forced = time.monotonic()
            lab.promote("dr2" if drill.primary == "dr1" else "dr1", force=True)
            pending = {w.name: w for w in drill.watchers}
            deadline = time.monotonic() + 180
            while pending and time.monotonic() < deadline:
                for name, w in list(pending.items()):
                    if split_brains(w) > seen[name]:
                        detected[name]["forced"] = time.monotonic() - forced
                        del pending[name]
                time.sleep(1)
            for name in pending:
                misses[name].append("split brain after a forced promotion")
    finally:
        drill.stop()

    for w in drill.watchers:
        misses[w.name] += episode_misses(drill, w, images)
    if posts_planned:
        for name in false_alarms:
            false_alarms[name].append(f"{posts_planned} Slack posts during the planned switches")
    real = [s.settled - s.started for s in drill.switches]
    print(
        f"\n{len(drill.switches)} switches of {len(images)} volumes in {time.monotonic() - began:.0f}s"
    )
    print(
        f"baseline: real switch duration (VR to secondary .. Ceph settled) "
        f"p50 {pct(real, 0.5)} p95 {pct(real, 0.95)} max {pct(real, 1.0)}"
    )
    print(
        f"{'daemon':<11} {'false alarms':>12} {'misses':>6} {'episodes':>9} {'RTO p50':>7} "
        f"{'p95':>5} {'max':>5} {'lost RTO p50':>12} {'split brain: forced':>19} {'return':>6}"
    )
    for w in drill.watchers:
        episodes = drill.episodes(w)
        planned = [e for e in episodes if e.trigger != "forced, peer lost"]
        rto = [e.rto_seconds for e in planned if e.rto_seconds is not None]
        lost_rto = [
            e.rto_seconds for e in episodes if e.trigger == "forced, peer lost" and e.rto_seconds
        ]
        d = detected[w.name]
        forced_s = f"{d['forced']:.0f}s" if d.get("forced") is not None else "MISSED"
        if not args.forced:
            forced_s = "-"
        back_s = f"{d['return']:.0f}s" if d.get("return") is not None else "-"
        print(
            f"{w.name:<11} {len(false_alarms[w.name]):>12} {len(misses[w.name]):>6}"
            f" {len(planned):>5}/{len(drill.switches) * len(images):<4}"
            f" {pct(rto, 0.5):>7} {pct(rto, 0.95):>5} {pct(rto, 1.0):>5}"
            f" {pct(lost_rto, 0.5):>12} {forced_s:>19} {back_s:>6}"
        )
        for what in false_alarms[w.name]:
            print(f"    false alarm: {what}")
        for what in misses[w.name]:
            print(f"    miss: {what}")
    print(f"Slack posts during the planned switches: {posts_planned}")
    if args.forced:
        print(f"lab left split-brained on {POOL}/{IMAGE}: scripts/ceph-lab.sh down && up to reset")
    failed = any(false_alarms.values()) or any(misses.values())
    print("verdict: " + ("FAIL (false alarms or misses above)" if failed else "pass"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
