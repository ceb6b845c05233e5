"""Fault convergence (issue 20): whatever fault the daemon went through, within two probe
intervals its open violations are what a fresh `auditd run` on the same world concludes, and
nothing fired that a fault-free run of the same workload would not have fired.

Hypothesis chooses the workload (volumes created, VRs dropped and re-added, stray PVCs on the
secondary, stalled replication, both images primary) and the fault's cluster, moment and
length; derandomized, so every machine and every CI run tries the same cases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import PG_URL
from convergence import (
    ABOUT_THE_FAULT,
    CLUSTERS,
    OPS,
    START,
    Fault,
    Outcome,
    Workload,
    config,
    hold_database,
    lose_session,
    pg_leadership,
    run_case,
    tagged,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

CASES = int(os.environ.get("AUDITD_CONVERGENCE_CASES", "4"))
# Shrinking a failure replays it dozens of times (minutes on PostgreSQL): off for a quick look.
SHRINK = os.environ.get("AUDITD_CONVERGENCE_SHRINK", "1") != "0"
NAMES = ("v1", "v2", "v3")


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    """A few DR-relevant changes, 5-40 s apart, after the volumes exist."""
    at = START + timedelta(seconds=40)
    out: Workload = [(at, "create", n) for n in NAMES[: draw(st.integers(1, len(NAMES)))]]
    for _ in range(draw(st.integers(1, 5))):
        at += timedelta(seconds=5 * draw(st.integers(1, 8)))
        out.append((at, draw(st.sampled_from(OPS[1:])), draw(st.sampled_from(NAMES))))
    return out


@st.composite
def cases(draw: st.DrawFn, kind: str) -> tuple[Workload, Fault]:
    workload = draw(workloads())
    span = int((workload[-1][0] - START).total_seconds())
    at = START + timedelta(seconds=5 * draw(st.integers(2, span // 5 + 2)))
    lasting = timedelta(seconds=5 * draw(st.integers(1, 12)))
    if kind == "expiry":
        lasting = timedelta(seconds=5)  # a watch that expires is relisted within seconds
    fault = Fault(kind, draw(st.sampled_from(CLUSTERS)), at, lasting, draw(st.booleans()))
    return workload, fault


def _sqlite(tmp: Path) -> Callable[[str], str]:
    return lambda name: f"sqlite:///{tmp / f'{name}-{uuid.uuid4().hex[:8]}.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A new empty history per daemon of a case. On PostgreSQL the running daemon's is a
    schema of its own; the fresh and fault-free references are judged on SQLite (the same
    core: what they conclude does not depend on the database)."""
    sqlite = _sqlite(tmp_path)
    if request.param == "sqlite":
        return sqlite
    schemas: Callable[[], str] = request.getfixturevalue("pg_schemas")
    return lambda name: schemas() if name == "running" else sqlite(name)


def _judge(outcome: Outcome) -> None:
    assert outcome.running_open == outcome.fresh_open, (
        f"running daemon {sorted(outcome.running_open)} != fresh {sorted(outcome.fresh_open)}"
    )
    extra = {f for f in outcome.fired if f[0] not in ABOUT_THE_FAULT} - outcome.reference_fired
    assert not extra, f"fired only because of the fault: {sorted(extra)}"


RUN = settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=list(Phase) if SHRINK else [p for p in Phase if p != Phase.shrink],
)


def _at(seconds: int) -> datetime:
    return START + timedelta(seconds=seconds)


# What the harness found, kept as cases of their own: each failed on the code before its fix,
# whatever cases hypothesis chooses later.
FOUND: dict[str, tuple[Workload, Fault]] = {
    # The records the last run stored were judged current after a restart: the lag counted
    # the downtime before the first probe answered.
    "restart: rpo-exceeded from stored records": (
        [(_at(40), "create", "v1"), (_at(40), "create", "v2"), (_at(45), "drop-vr", "v1")],
        Fault("restart", "dr1", _at(50), timedelta(seconds=55)),
    ),
    # A split brain that went dark (the old primary's probe failing) read as a failover done
    # without it: old-primary-not-fenced beside split-brain once the probe answered again.
    "probe: a split brain gone dark is no failover": (
        [(_at(40), "create", "v1"), (_at(50), "both", "v1"), (_at(85), "drop-vr", "v3")],
        Fault("probe", "dr1", _at(110), timedelta(seconds=35)),
    ),
    # The primary's clock set back an hour: its snapshot times made every lag an hour long
    # until the window of readings from before the jump had passed.
    "clock: the primary set back an hour": (
        [(_at(40), "create", "v1"), (_at(40), "create", "v2"), (_at(50), "stall", "v1")],
        Fault("clock", "dr1", _at(60), timedelta(seconds=45), ahead=False),
    ),
}


@pytest.mark.parametrize("name", FOUND)
def test_the_cases_the_harness_found_stay_fixed(name: str, tmp_path: Path) -> None:
    workload, fault = FOUND[name]
    _judge(run_case(_sqlite(tmp_path), workload, fault))


@pytest.mark.parametrize("kind", ["blind", "expiry", "probe", "clock", "restart", "db-down"])
def test_the_running_daemon_converges_with_a_fresh_one_after_a_fault(
    make_url: Callable[[str], str], kind: str
) -> None:
    @RUN
    @given(cases(kind))
    def case(c: tuple[Workload, Fault]) -> None:
        workload, fault = c
        on_fault = hold_database(1.5) if kind == "db-down" else None
        _judge(run_case(make_url, workload, fault, on_fault))

    case()


@pytest.mark.postgres
def test_after_a_lost_database_session_the_daemon_converges_with_a_fresh_one(
    pg_schemas: Callable[[], str], tmp_path: Path
) -> None:
    """Every session of the daemon terminated, again every 5 s while the fault lasts, between
    batches or while one is written (hypothesis chooses): the fence refuses the commit in
    flight, memory is reloaded from the history, the pair is taken over again, and the verdicts
    must be as if nothing happened."""
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    sqlite = _sqlite(tmp_path)

    @RUN
    @given(cases("session"))
    def case(c: tuple[Workload, Fault]) -> None:
        workload, fault = c
        _judge(
            run_case(
                lambda name: tagged(pg_schemas()) if name == "running" else sqlite(name),
                workload,
                fault,
                lose_session(plain),
                lambda url: pg_leadership(url, config()),
            )
        )

    case()
