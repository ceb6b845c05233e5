"""The JSON webhook and Alertmanager sinks against a local HTTP receiver, and --dry-run."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from auditd.alerts.message import Alert
from auditd.alerts.render_group import words
from auditd.alerts.sinks.build import build_sinks
from auditd.alerts.sinks.console import LogSink
from auditd.alerts.sinks.http import AlertmanagerSink, WebhookSink
from auditd.cli import main
from auditd.config import parse_config
from auditd.retry_after import retry_after

PAYLOAD = {
    "event": "firing",
    "rule": "split-brain",
    "subject": "p/replicapool/x",
    "severity": "critical",
    "text": "FIRING [critical] split-brain",
    "blocks": [{"type": "section"}],
    "labels": {
        "rule": "split-brain",
        "severity": "critical",
        "cluster": None,
        "pair": "p",
        "subject": "p/replicapool/x",
    },
}
# Stored as the writer stores it (schema 2), then read back as the deliver stage does.
ALERT = Alert.from_json({**PAYLOAD, "v": 2})


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        # Header values may be functions of the answer's Date (an HTTP-date Retry-After).
        self.answers: list[tuple[int, dict[str, Any]]] = []
        receiver = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append((self.path, body))
                code, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(code)  # sends Date too
                date = self.date_time_string()
                for k, v in headers.items():
                    self.send_header(k, v(date) if callable(v) else v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_webhook(receiver: Receiver) -> None:
    sink = WebhookSink(SecretStr(receiver.url + "/hook/SECRET"), 5)
    assert sink.send(ALERT, "auditd-notification-1").ok
    path, body = receiver.posts[0]
    assert (
        path == "/hook/SECRET"
        and body["key"] == "auditd-notification-1"
        and body["rule"] == "split-brain"
    )
    assert "blocks" not in body and body["version"] == 1
    receiver.answers = [(429, {"Retry-After": "9"}), (503, {}), (400, {})]
    r = sink.send(ALERT, "k")
    assert not r.ok and not r.permanent and r.retry_after == 9
    assert not sink.send(ALERT, "k").permanent
    r = sink.send(ALERT, "k")
    assert r.permanent and "SECRET" not in (r.error or "")
    dead = WebhookSink(SecretStr("http://127.0.0.1:9/x"), 2).send(ALERT, "k")
    assert not dead.ok and not dead.permanent


def test_alertmanager(receiver: Receiver) -> None:
    sink = AlertmanagerSink(SecretStr(receiver.url), 5)
    assert sink.send(ALERT, "k").ok
    assert sink.send(replace(ALERT, event="resolved"), "k").ok
    (path, [firing]), (_, [resolved]) = receiver.posts
    assert path == "/api/v2/alerts"
    assert firing["labels"] == {
        "alertname": "split-brain",
        "severity": "critical",
        "pair": "p",
        "subject": "p/replicapool/x",
    }
    assert "startsAt" in firing and "endsAt" in resolved


def test_sinks_from_config_redacted_and_dry_run(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        "alerts": {
            "webhook": {"url": receiver.url + "/SECRET"},
            "alertmanager": {"url": receiver.url},
        },
        "slack": {"enabled": False},
    }
    config = parse_config(raw)
    assert sorted(build_sinks(config)) == ["alertmanager", "webhook"]
    dry = build_sinks(config, dry_run=True)
    assert list(dry) == ["log"] and isinstance(dry["log"], LogSink)
    assert dry["log"].send(ALERT, "k").ok and receiver.posts == []
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[alerts.webhook]\nurl = "{receiver.url}/SECRET"\n')
    assert main(["config", "check", "-c", str(cfg)]) == 0
    assert "SECRET" not in capsys.readouterr().out


def test_slack_incoming_webhook_mode(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditd.alerts.sinks.slack import SlackWebhookSink

    url = receiver.url + "/services/T000/B000/SECRETXYZ"
    monkeypatch.delenv("AUDITD_SLACK_TOKEN", raising=False)
    monkeypatch.setenv("AUDITD_SLACK_WEBHOOK", url)
    config = parse_config({})
    sink = build_sinks(config)["slack"]
    assert isinstance(sink, SlackWebhookSink)
    assert sink.send(ALERT, "k").ok
    path, body = receiver.posts[0]
    assert (
        path == "/services/T000/B000/SECRETXYZ"
        and body["text"] == words(ALERT).text
        and body["blocks"]
    )
    receiver.answers = [(429, {"Retry-After": "4"}), (404, {})]
    r = sink.send(ALERT, "k")
    assert not r.ok and not r.permanent and r.retry_after == 4
    r = sink.send(ALERT, "k")
    assert r.permanent and "SECRETXYZ" not in (r.error or "")
    assert "SECRETXYZ" not in str(config.redacted())


def test_retry_after_as_seconds_or_an_http_date_on_the_servers_clock(receiver: Receiver) -> None:
    """Issue 21: Retry-After was read in four places, none took the HTTP-date form."""

    def later(seconds: int) -> Callable[[str], str]:
        return lambda date: formatdate(
            parsedate_to_datetime(date).timestamp() + seconds, usegmt=True
        )

    sink = WebhookSink(SecretStr(receiver.url + "/hook"), 5)
    receiver.answers = [(429, {"Retry-After": later(120)}), (429, {"Retry-After": "7"})]
    assert sink.send(ALERT, "k").retry_after == pytest.approx(120, abs=1)
    assert sink.send(ALERT, "k").retry_after == 7
    receiver.answers = [(429, {"Retry-After": "soon"}), (429, {})]
    assert sink.send(ALERT, "k").retry_after == 1.0  # unreadable: the default
    assert sink.send(ALERT, "k").retry_after == 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": ["2.5"]}, 2.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "99999999"}, 3600.0),
        (
            {
                "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
            30.0,
        ),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"}, None),  # no Date to count from
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, Any], expected: float | None) -> None:
    assert retry_after(headers) == expected
