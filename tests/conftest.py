"""Reusable fixtures: two fake clusters behind one kubeconfig, a fake Slack, and databases.

PostgreSQL is real: the server at $AUDITD_TEST_PG_URL (default 127.0.0.1:5432, database
`test`). Each test gets its own schema, dropped afterwards. When no server answers, the
PostgreSQL variants skip, unless AUDITD_REQUIRE_PG=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from auditd.config import Config, parse_config
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sim.fakeslack import FakeSlack

PG_URL = os.environ.get("AUDITD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# The real-Ceph tier (marked `ceph`) lives in these files. `make test` runs two xdist workers
# (`--dist loadgroup`), and every test of these files goes to one of them, in turn: they share
# one lab and each switches its images. They mostly wait on Ceph (rbd-mirror's 30 s cycles,
# snapshot schedules), so they are sent first and the rest of the suite runs beside them (on a
# slow 2-core machine the tier was 1,100 s of a 1,940 s suite run in one process).
# xdist's own `xdist_group` mark cannot do this: it renames items' nodeids, which pytest 9 no
# longer allows (the mark is silently ignored).
CEPH_TIER_FILES = frozenset(
    {
        "tests/sources/test_ceph_lab.py",
        "tests/system/test_drill_on_ceph.py",
        "tests/system/test_bench_smoke.py",
    }
)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A `ceph` test outside CEPH_TIER_FILES would run beside the tier, on the same lab."""
    stray = [
        item.nodeid
        for item in items
        if item.get_closest_marker("ceph") and _file_of(item.nodeid) not in CEPH_TIER_FILES
    ]
    if stray:
        raise pytest.UsageError(
            f"`ceph` tests outside CEPH_TIER_FILES (tests/conftest.py): {stray}"
        )


class _CephTierInOneWorker(LoadScopeScheduling):
    """Every test of CEPH_TIER_FILES is one unit of work; every other test is a unit of its own.
    The biggest unit goes out first (xdist's --loadscope-reorder, on by default)."""

    def _split_scope(self, nodeid: str) -> str:
        return "ceph-tier" if _file_of(nodeid) in CEPH_TIER_FILES else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own choice
    return _CephTierInOneWorker(config, log)


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two simulated clusters, dr1 (primary) and dr2 (secondary), and a kubeconfig for both."""
    dr1 = FakeKubeAPI("dr1", bookmark_interval=0.2).start()
    dr2 = FakeKubeAPI("dr2", bookmark_interval=0.2).start()
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(str(kubeconfig), {"dr1": dr1.url, "dr2": dr2.url})
    yield {"dr1": dr1, "dr2": dr2, "kubeconfig": kubeconfig}
    dr1.stop()
    dr2.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def _pg_reachable() -> str | None:
    import psycopg

    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e).splitlines()[0]


@pytest.fixture
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Makes PostgreSQL URLs whose search_path is a fresh schema each, dropped afterwards."""
    problem = _pg_reachable()
    if problem is not None:
        if os.environ.get("AUDITD_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    import psycopg

    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    made: list[str] = []

    def make() -> str:
        schema = f"auditd_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    yield make
    with psycopg.connect(plain, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_schemas: Callable[[], str]) -> str:
    """A PostgreSQL URL whose search_path is a fresh schema of this test's own."""
    return pg_schemas()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auditd.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def make_config(tmp_path: Path, clusters: dict[str, Any]) -> Callable[..., Config]:
    """A valid config for the two fake clusters; keyword arguments override top-level keys."""

    def make(**overrides: Any) -> Config:
        raw: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "clusters": [
                {
                    "name": "dr1",
                    "kubeconfig": str(clusters["kubeconfig"]),
                    "context": "dr1",
                    "role": "primary",
                },
                {
                    "name": "dr2",
                    "kubeconfig": str(clusters["kubeconfig"]),
                    "context": "dr2",
                    "role": "secondary",
                },
            ],
            "pairs": [{"name": "dr1-dr2", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
            "watch": {"backoff_initial": "50ms", "backoff_max": "500ms", "read_timeout": "5s"},
            "slack": {"enabled": False},
            "alerts": {"group_wait": "0s", "group_interval": "0s"},
            "ops": {"listen": "127.0.0.1:0"},
        }
        alerts = overrides.pop("alerts", {})
        raw.update(overrides)
        raw["alerts"] = {**raw["alerts"], **alerts}
        return parse_config(raw)

    return make
