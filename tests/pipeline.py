"""The real pipeline (ingest -> inventory -> rules -> lifecycle -> SQLite) driven minute by
minute from the captures: what the scenario tests replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from captured_pair import probe, volume
from sqlalchemy import select

from auditd.config import parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Tick
from auditd.daemon.metrics import Metrics
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sources.kube.events import ObjectEvent
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import EpisodeRow, ViolationRow

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CONFIG = {
    "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
    "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
}


class Pipeline:
    def __init__(self, tmp_path: Path, metrics: Metrics | None = None, **rules: Any) -> None:
        url = f"sqlite:///{tmp_path / 'h.db'}"
        upgrade(url)
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.config = parse_config({**CONFIG, "rules": rules})
        self.ingest = Ingestor(
            self.sessions, Inventory(), RuleEngine(self.config), {}, ["log"], metrics=metrics
        )

    def at(self, minutes: float, *items: Any) -> None:
        now = T0 + timedelta(minutes=minutes)
        self.ingest.process([*items, Tick(now)], now)

    def violations(self) -> list[tuple[str, str, str]]:
        with self.sessions() as s:
            return [
                (v.rule, v.subject, v.state)
                for v in s.scalars(select(ViolationRow).order_by(ViolationRow.id))
            ]

    def episodes(self) -> list[EpisodeRow]:
        with self.sessions() as s:
            return list(s.scalars(select(EpisodeRow).order_by(EpisodeRow.id)))


def steady(p: Pipeline) -> None:
    p.at(0, *volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy"))


def deleted(ev: ObjectEvent) -> ObjectEvent:
    gone = replace(ev.object, resource_version=str(int(ev.object.resource_version or 0) + 100))
    return ObjectEvent(ev.cluster, ev.kind, "DELETED", gone, ev.received_at)
