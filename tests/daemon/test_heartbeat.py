"""The heartbeat URL (ha.heartbeat_url): a dead man's switch outside Prometheus."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import wait_until
from pydantic import SecretStr

from auditd.config import ConfigError, HaConfig
from auditd.daemon.heartbeat import Heartbeat
from auditd.daemon.runner import Daemon

TOKEN = "hc-8c1f2d0e-secret"


class Receiver:
    """A heartbeat receiver (as healthchecks.io): counts GETs of /ping/<token>."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pings: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                receiver.pings.append(self.path)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/{TOKEN}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_the_daemon_pings_while_it_audits(
    receiver: Receiver,
    make_config: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUDITD_HEARTBEAT_URL", receiver.url)
    daemon = Daemon(make_config(ha={"heartbeat_every": "1s"}))
    daemon.start()
    try:
        wait_until(lambda: len(receiver.pings) >= 2, 15)
        assert set(receiver.pings) == {f"/ping/{TOKEN}"}
    finally:
        daemon.stop()
    after = len(receiver.pings)
    time.sleep(2.5)
    assert len(receiver.pings) == after  # stopped: no more pings


def test_no_ping_while_auditd_cannot_be_trusted_and_no_token_in_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = {"ok": False, "why": "history database not writable: disk full"}
    beat = Heartbeat(SecretStr(receiver.url), lambda: (state["ok"], state["why"]))
    assert beat.beat() is False and receiver.pings == []
    assert beat.beat() is False
    assert caplog.text.count("heartbeat withheld") == 1  # once per reason, not per minute
    state["ok"] = True
    assert beat.beat() is True and len(receiver.pings) == 1
    receiver.status = 500
    assert beat.beat() is False
    dead = Heartbeat(SecretStr(f"http://127.0.0.1:9/ping/{TOKEN}"), lambda: (True, "ok"))
    assert dead.beat() is False
    assert "HTTP 500" in caplog.text and "cannot reach the receiver" in caplog.text
    assert TOKEN not in caplog.text


def test_a_heartbeat_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITD_HEARTBEAT_URL", f"file:///etc/{TOKEN}")
    with pytest.raises(ConfigError) as e:
        HaConfig().heartbeat_url()
    assert "http" in str(e.value) and TOKEN not in str(e.value)
