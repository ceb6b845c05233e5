"""Every script in bench/ runs, in a smoke size, so none rots unseen (a bench nobody runs broke
once: rules_eval.py stopped at a changed signature for weeks). Only that it ran and printed its
figures: the figures themselves are read by people, beside the baseline each prints, never
asserted as timings."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from paths import ROOT

BENCH = ROOT / "bench"

# Each script's smallest size that still runs every part of it.
SMOKE: dict[str, list[str]] = {
    "alert_latency.py": ["--alerts", "5"],
    "check_scale.py": ["--volumes", "50"],
    # Every other bench at two tiny sizes, on SQLite, read back into one table.
    "cost_curve.py": ["--sizes", "20,40"],
    "metrics_scale.py": ["--images", "50"],
    "rbd_parse.py": ["--images", "50"],
    # As Ramen applications: cost_curve runs it without.
    "rules_eval.py": ["--volumes", "50", "--changes", "20", "--app-size", "10"],
    "report_scale.py": ["--transitions", "2000", "--volumes", "50"],
    "watch_scale.py": ["--volumes", "50", "--events", "200", "--history", "1000"],
    # Long enough for two relists, probes every 10 s, volumes replaced and a pruned history,
    # on SQLite only.
    "soak.py": [
        *("--duration", "45s", "--volumes", "50", "--sample-every", "5s"),
        *("--keep", "10s", "--relist-every", "20s", "--probe-interval", "10s"),
        *("--volume-every", "5s", "--census-every", "20s"),
    ],
    # The planned-switch drill: one failover and failback of one volume, watched at the 60 s
    # default probe and at 10 s; it exits 1 on a false alarm, a Slack post, or a switch that is
    # not one ended episode within its real duration plus a cycle. Judged one slow cycle and
    # 10 s after the last switch (no extra settling). No site loss and no forced promotion:
    # test_drill_on_ceph.py has them.
    "failover_drill.py": [
        *("--cycles", "1", "--images", "1", "--intervals", "60,10", "--settle", "0"),
        *("--no-site-loss", "--no-forced"),
    ],
}
WITH_DB = {"report_scale.py", "watch_scale.py"}


def test_every_bench_has_a_smoke_size() -> None:
    assert {p.name for p in BENCH.glob("*.py")} == set(SMOKE)


def _run(script: str, args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    assert re.search(r"\d", done.stdout), done.stdout
    print(done.stdout)
    return done.stdout


# What a smoke run must also print, where a bench reads something from what it measures.
PRINTS = {
    # The daemon's census on SIGUSR2 (auditd/daemon/census.py), read back from its log: the
    # two it compares, and those taken every --census-every between.
    "soak.py": ("held by the daemon, after the warm-up -> at the end", "census: "),
    # Its verdict on the target, printed, never its exit code: CI's busy machine once took
    # more than 1 s to start `auditd report` at the smoke size and failed a run on time.
    "report_scale.py": ("target `auditd report` process <= 1 s: ",),
    # The writer's batches and the garbage collector's time, read from the daemon's /metrics
    # (auditd_ingest_batch_items, auditd_gc_seconds_total), and the CPU an event, from /proc.
    "watch_scale.py": ("committed batches", "the garbage collector ran", "CPU an event"),
    # Its applications' failover: the volumes a tick judges while a Ramen action runs.
    "rules_eval.py": (
        "full evaluation (restart, stream back)",
        "both from nothing (check, explain)",
        "a timer tick during one application's failover",
        "a burst in batches of 1,000",
    ),
}


@pytest.mark.parametrize("script", sorted(set(SMOKE) - WITH_DB - {"failover_drill.py"}))
def test_bench_runs(script: str) -> None:
    out = _run(script, SMOKE[script], {}, 300)
    assert all(said in out for said in PRINTS.get(script, ())), out


@pytest.mark.parametrize("script", sorted(WITH_DB))
def test_bench_runs_on_sqlite(script: str) -> None:
    out = _run(script, [*SMOKE[script], "--db", "sqlite"], {}, 300)
    assert all(said in out for said in PRINTS.get(script, ())), out


@pytest.mark.postgres
@pytest.mark.parametrize("script", sorted(WITH_DB))
def test_bench_runs_on_postgresql(script: str, pg_schemas: Callable[[], str]) -> None:
    # pg_schemas only for its check that the server answers: each bench makes its own schema.
    out = _run(script, [*SMOKE[script], "--db", "postgresql"], {}, 300)
    assert all(said in out for said in PRINTS.get(script, ())), out


def test_the_soak_takes_a_metrics_endpoint_that_does_not_answer_as_a_sample_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape refused, or one that does not answer in time, is a sample without its /metrics
    figures: the first scrape after a sync under tracemalloc once took more than 10 s, and the
    whole soak died of it."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import soak  # type: ignore[import-not-found]

    monkeypatch.setattr(soak, "SCRAPE_TIMEOUT", 0.3)
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        assert soak.scrape(refused.getsockname()[1]) is None
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        assert soak.scrape(silent.getsockname()[1]) is None


@pytest.mark.ceph
@pytest.mark.timeout(600)
def test_planned_switches_on_the_lab_are_silent_and_each_is_one_episode() -> None:
    """bench/failover_drill.py at its smoke size is the planned-switch drill: every switch
    silent (nothing fired, nothing posted) and one episode per switch on both daemons."""
    lab = Path(os.environ.get("AUDITD_CEPH_LAB", "/tmp/auditd-ceph-lab"))
    if not (lab / ".up").exists():
        if os.environ.get("AUDITD_REQUIRE_CEPH") == "1":
            pytest.fail(f"the Ceph lab is required but not up in {lab}")
        pytest.skip(f"no Ceph lab in {lab} (scripts/ceph-lab.sh up)")
    out = _run("failover_drill.py", SMOKE["failover_drill.py"], {}, 600)
    assert "baseline: real switch duration" in out and "verdict: pass" in out
