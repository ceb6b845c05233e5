"""A history database, a rule-level alert writer and a real dispatcher posting to the fake
Slack, on virtual time: what the grouping and Slack-outage tests drive."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.message import Alert
from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.slack import SlackSink
from auditd.config import AlertsConfig
from auditd.rules.lifecycle import Active, step
from auditd.rules.model import Finding
from auditd.sim.fakeslack import FakeSlack
from auditd.store.db import make_engine, session_factory
from auditd.store.load import load_open_violations
from auditd.store.migrate import upgrade
from auditd.store.writer import PlannedNotification, write_change


class Outbox:
    """A history database, a rule-level alert writer and a dispatcher, on virtual time."""

    def __init__(self, tmp_path: Path, slack: FakeSlack, **alerts: Any) -> None:
        url = f"sqlite:///{tmp_path / 'g.db'}"
        upgrade(url)
        self.engine = make_engine(url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.slack = slack
        self.settings = AlertsConfig(**alerts)
        self.sinks: dict[str, Any] = {}
        self.dispatcher = self.new_dispatcher()

    def new_dispatcher(self) -> Dispatcher:
        """A fresh dispatcher (a restart) delivering to the fake Slack."""
        return self.deliver_to({"slack": self.slack_sink})

    def deliver_to(self, sinks: dict[str, Any]) -> Dispatcher:
        """From now on, a dispatcher that delivers to these sinks."""
        self.sinks = sinks
        self.dispatcher = Dispatcher(self.sessions, sinks, self.settings)
        return self.dispatcher

    @property
    def slack_sink(self) -> SlackSink:
        return SlackSink(SecretStr(self.slack.token), "#dr-alerts", self.slack.base_url, 5)

    def write(self, active: Active | None, finding: Finding | None, now: datetime) -> None:
        change = step(active, finding, timedelta(0), now)
        assert change is not None and change.notify
        payload = Alert.of(change.violation, "rbd mirror image status x").to_json()
        with self.sessions.begin() as s:
            write_change(s, change, [PlannedNotification("slack", payload)], now)

    def fire(self, image: str, now: datetime, severity: str = "warning") -> None:
        subject = f"p/replicapool/{image}"
        active = self.open().get(("secondary-not-replaying", subject))
        finding = Finding(
            "secondary-not-replaying",
            subject,
            severity,
            f"{image} is not replaying",
            "dr2",
            "p",
            {"namespace": "app"},
        )
        self.write(active, finding, now)

    def resolve(self, image: str, now: datetime) -> None:
        self.write(self.open()[("secondary-not-replaying", f"p/replicapool/{image}")], None, now)

    def open(self) -> dict[tuple[str, str], Active]:
        with self.sessions() as s:
            return load_open_violations(s)

    def posts(self) -> list[dict[str, Any]]:
        return list(self.slack.messages)
