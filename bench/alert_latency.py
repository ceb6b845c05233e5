#!/usr/bin/env python3
"""Alert latency benchmark (issue 6): a PVC appears on the secondary -> its Slack post arrives.

Everything real but the far ends: two simulated clusters and a fake Slack on loopback, the
daemon in-process (watch -> inventory -> rules -> outbox -> slack-sdk). Measured per alert from
the API server write to the message arriving at Slack; the baseline in the same run is a bare
slack-sdk chat.postMessage round trip to the same fake Slack. Target: p99 < 1 s.

    python bench/alert_latency.py [--alerts 100]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from pydantic import SecretStr
from slack_sdk import WebClient

from auditd.alerts.sinks.slack import SlackSink
from auditd.config import parse_config
from auditd.daemon.runner import Daemon
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PVC


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--alerts", type=int, default=100)
    n = ap.parse_args().alerts
    work = Path(tempfile.mkdtemp(prefix="auditd-latency-"))
    dr1, dr2 = FakeKubeAPI("dr1").start(), FakeKubeAPI("dr2").start()
    slack = FakeSlack().start()
    kc = work / "kubeconfig"
    write_kubeconfig(str(kc), {"dr1": dr1.url, "dr2": dr2.url})
    config = parse_config(
        tomllib.loads(pair_config_toml(kc, f"sqlite:///{work / 'h.db'}", log_level="WARNING"))
    )
    sink = SlackSink(SecretStr(slack.token), "#dr-alerts", slack.base_url, 10)
    daemon = Daemon(config, sinks={"slack": sink})
    daemon.start()
    daemon.wait_synced(30)
    latencies = []
    try:
        for i in range(n):
            t = time.perf_counter()
            dr2.create(PVC, objects.pvc(f"stray-{i}", "app"))
            slack.wait_for(i + 1, timeout=30)
            latencies.append(time.perf_counter() - t)
    finally:
        daemon.stop()
    client = WebClient(token=slack.token, base_url=slack.base_url)
    baseline = []
    for i in range(n):
        t = time.perf_counter()
        client.chat_postMessage(channel="#dr-alerts", text=f"baseline {i}")
        baseline.append(time.perf_counter() - t)
    for s in (dr1, dr2):
        s.stop()
    slack.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"alert latency, {n} alerts, violation on the secondary -> Slack post (ms)\n")
    print(f"{'':26} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, vals in (("auditd end to end", latencies), ("baseline chat.postMessage", baseline)):
        print(
            f"{name:26} "
            + " ".join(f"{pct(vals, p) * 1000:8.1f}" for p in (50, 90, 99))
            + f" {max(vals) * 1000:8.1f}"
        )
    print(
        f"\nmean {statistics.mean(latencies) * 1000:.1f} ms; target p99 < 1000 ms:",
        "MET" if pct(latencies, 99) < 1 else "NOT MET",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
