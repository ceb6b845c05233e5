"""The Alertmanager sink keeps Alertmanager's client contract (issue 12, item 7): against a fake
Alertmanager that forgets alerts as the real one does (an alert without endsAt resolves
resolve_timeout after it was last received), a split brain stays firing for as long as it
fires in auditd, and resolves when auditd resolves it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from auditd.alerts.message import Alert
from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.http import AlertmanagerSink
from auditd.clock import ManualClock
from auditd.config import AlertsConfig
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.store.db import make_engine, session_factory
from auditd.store.load import load_open_violations
from auditd.store.migrate import upgrade
from auditd.store.writer import PlannedNotification, write_change

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RESOLVE_TIMEOUT = timedelta(minutes=5)  # Alertmanager's default


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FakeAlertmanager:
    """POST /api/v2/alerts, remembering per label set what the real one would."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.alerts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = fake.clock.now()
                for a in body:
                    assert "startsAt" in a and a.get("generatorURL"), a
                    key = tuple(sorted(a["labels"].items()))
                    ends = _time(a["endsAt"]) if a.get("endsAt") else now + RESOLVE_TIMEOUT
                    fake.alerts[key] = {**a, "ends": ends}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def firing(self) -> list[str]:
        now = self.clock.now()
        return [dict(k)["alertname"] for k, a in self.alerts.items() if now < a["ends"]]


@pytest.fixture
def am() -> Iterator[FakeAlertmanager]:
    clock = ManualClock(T)
    fake = FakeAlertmanager(clock)
    yield fake
    fake.server.shutdown()


def test_a_split_brain_stays_firing_in_alertmanager_until_auditd_resolves_it(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    url = f"sqlite:///{tmp_path / 'am.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    sink = AlertmanagerSink(SecretStr(am.url), 5, clock=am.clock)
    d = Dispatcher(sessions, {"alertmanager": sink}, AlertsConfig(), clock=am.clock)
    finding = Finding("split-brain", "p/replicapool/img", "critical", "both primary", None, "p", {})

    def write(finding: Finding | None) -> None:
        with sessions() as s:
            active = load_open_violations(s).get(("split-brain", "p/replicapool/img"))
        change = step(active, finding, timedelta(0), am.clock.now())
        assert change is not None
        payload = Alert.of(change.violation, "").to_json()
        with sessions.begin() as s:
            write_change(s, change, [PlannedNotification("alertmanager", payload)], am.clock.now())

    write(finding)
    for _ in range(40):  # 20 minutes, a pass every 30 s
        d.drain_once()
        assert am.firing() == ["split-brain"], am.clock.now()
        am.clock.advance(30)
    write(None)
    d.drain_once()
    assert am.firing() == []
    [alert] = am.alerts.values()
    assert _time(alert["endsAt"]) <= am.clock.now()
