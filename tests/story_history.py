"""The demo's story (ingest -> inventory -> rules -> store -> outbox, real Ceph captures)
replayed into a history at a fixed instant, and the report read back over its window: what the
report and retention tests share."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.console import ConsoleSink
from auditd.config import Config, parse_config
from auditd.report.query import Filters, ReportData, load_report
from auditd.sim.story import LENGTH, replay
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SINCE, UNTIL = T0 - timedelta(minutes=2), T0 + LENGTH + timedelta(minutes=2)
PAIR = {"name": "dr1-dr2", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}


def story_config(url: str) -> Config:
    return parse_config(
        {
            "database_url": url,
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [PAIR],
            "alerts": {"group_wait": "0s", "group_interval": "30s"},
        }
    )


def played(url: str) -> str:
    """Replay the story into a fresh database; returns what the console sink printed."""
    upgrade(url)
    engine = make_engine(url)
    out = io.StringIO()
    config = story_config(url)
    sessions = session_factory(engine)
    replay(sessions, config, T0, Dispatcher(sessions, {"console": ConsoleSink(out)}, config.alerts))
    engine.dispose()
    return out.getvalue()


def report(url: str, filters: Filters | None = None) -> ReportData:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        data = load_report(s, SINCE, UNTIL, filters)
    engine.dispose()
    return data
