"""A long DR drill on the real two-site Ceph lab: false alarms, misses and RTO over N switches.

    scripts/ceph-lab.sh up
    .venv/bin/python bench/failover_drill.py --cycles 100        # 200 switches, ~4 hours
    .venv/bin/python bench/failover_drill.py --cycles 3 --intervals 60,10

Two `auditd run` processes (one per probe interval) watch Ramen-style failovers and failbacks
(tests/ceph_drill.py; every third with a DRPC in Relocating/FailingOver) and then one forced
promotion (the real split brain, which must be caught: a miss otherwise). Prints, per daemon:
Slack posts and violations fired during the planned switches (each one a false alarm),
episodes recorded against switches done, RTO percentiles as auditd recorded them against the
switches' real durations (the baseline), and the split brain's detection time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ceph_drill import IMAGE, POOL, Drill, Lab


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))]:.0f}s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100, help="failover+failback cycles")
    ap.add_argument("--intervals", default="60,10", help="probe intervals, one daemon each")
    ap.add_argument("--lab", default=os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    args = ap.parse_args()
    lab = Lab(Path(args.lab))
    lab.wait_steady("dr1")
    intervals = tuple(int(i) for i in args.intervals.split(","))
    work = Path(tempfile.mkdtemp(prefix="auditd-drill-"))
    drill = Drill(lab, work, intervals=intervals)
    began = time.monotonic()
    try:
        drill.start()
        time.sleep(20)
        for i in range(2 * args.cycles):
            s = drill.switch(drpc=i % 3 == 1)
            # As the CI drill: the slower daemon looks at the settled pair before the next one.
            time.sleep(max(intervals) + 10)
            print(
                f"switch {i + 1}/{2 * args.cycles} {s.old}->{s.new}"
                f"{' drpc ' + s.drpc if s.drpc else ''}: {s.settled - s.started:.0f}s",
                flush=True,
            )
        time.sleep(2 * max(intervals) + 5)
        planned = {w.name: (len(drill.slack_messages()), drill.fired(w)) for w in drill.watchers}
        posts_before = len(drill.slack_messages())
        forced = time.monotonic()
        lab.promote("dr2" if drill.primary == "dr1" else "dr1", force=True)
        detected: dict[str, float | None] = {w.name: None for w in drill.watchers}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and None in detected.values():
            for w in drill.watchers:
                if detected[w.name] is None and any(
                    r == "split-brain" for r, _, _ in drill.fired(w)
                ):
                    detected[w.name] = time.monotonic() - forced
            time.sleep(1)
    finally:
        drill.stop()
    real = [s.settled - s.started for s in drill.switches]
    print(f"\n{len(drill.switches)} switches in {time.monotonic() - began:.0f}s on real Ceph")
    print(
        f"baseline: real switch duration (VR to secondary .. Ceph settled) p50 {pct(real, 0.5)} p95 {pct(real, 0.95)} max {pct(real, 1.0)}"
    )
    print(
        f"{'daemon':<12} {'false alarms':>12} {'slack posts':>11} {'episodes':>9} {'RTO p50':>8} {'RTO p95':>8} {'RTO max':>8} {'split brain':>12}"
    )
    for w in drill.watchers:
        posts, fired = planned[w.name]
        episodes = drill.episodes(w)
        rto = [e.rto_seconds for e in episodes if e.rto_seconds is not None]
        split = detected[w.name]
        print(
            f"{w.name:<12} {len(fired):>12} {posts:>11} {len(episodes):>6}/{len(drill.switches):<2}"
            f" {pct(rto, 0.5):>8} {pct(rto, 0.95):>8} {pct(rto, 1.0):>8}"
            f" {'MISSED' if split is None else f'{split:.0f}s':>12}"
        )
        for rule, subject, severity in fired:
            print(f"    false alarm: {rule} [{severity}] {subject}")
    print(
        f"(after the forced promotion: {len(drill.slack_messages()) - posts_before} Slack posts; "
        f"RTO mean {statistics.mean(rto) if rto else 0:.1f}s for the last daemon)"
    )
    print(f"lab left split-brained on {POOL}/{IMAGE}: scripts/ceph-lab.sh down && up to reset")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
