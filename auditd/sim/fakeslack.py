"""A fake Slack Web API on loopback, for the real slack-sdk ``WebClient(base_url=...)``.

Implements what auditd calls (chat.postMessage, chat.update, auth.test,
conversations.history) with Slack's answer shapes, token and channel checks, and fault
injection: HTTP 429 with Retry-After, 5xx, Slack error codes, and delays (timeouts).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

# How often the server loop looks for a shutdown: stop() waits up to this (the standard
# library's 0.5 s, paid twice per test, was most of many tests' time).
POLL = 0.02


@dataclass
class _Fault:
    status: int = 200
    error: str | None = None  # a Slack error code in an ok=false body
    retry_after: int | None = None
    delay: float = 0.0
    method: str | None = None
    after_accept: float = 0.0  # store the message, then wait this long before answering


class FakeSlack:
    def __init__(
        self, token: str = "xoxb-test-token", channels: tuple[str, ...] = ("#dr-alerts",)
    ) -> None:
        self.token = token
        self.channels = set(channels)
        self.messages: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status answered)
        self._faults: list[_Fault] = []
        self._cond = threading.Condition()
        self._ts = 1_700_000_000.000100
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeSlack:
        fake = self

        class Handler(_Handler):
            slack = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL},
            name="fakeslack",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        method: str | None = None,
        after_accept: float = 0.0,
    ) -> None:
        with self._cond:
            self._faults.extend(
                _Fault(status, error, retry_after, delay, method, after_accept)
                for _ in range(count)
            )

    def recover(self) -> None:
        """Drop every fault still queued: Slack answers again."""
        with self._cond:
            self._faults.clear()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``n`` messages were posted; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.messages)} Slack messages, wanted {n}")
                self._cond.wait(left)
            return list(self.messages)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            for i, f in enumerate(self._faults):
                if f.method is None or f.method == method:
                    return self._faults.pop(i)
        return None

    def handle(
        self, method: str, auth: str | None, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status == 429:
                return (
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(fault.retry_after or 1)},
                )
            if fault.status >= 500:
                return fault.status, {"ok": False, "error": "internal_error"}, {}
            if fault.error:
                return 200, {"ok": False, "error": fault.error}, {}
        if auth != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "not_authed" if not auth else "invalid_auth"}, {}
        if method == "auth.test":
            return 200, {"ok": True, "team": "auditd", "user": "auditd-bot", "bot_id": "B1"}, {}
        channel = args.get("channel")
        if (
            method
            in ("chat.postMessage", "chat.update", "conversations.history", "conversations.replies")
            and channel not in self.channels
        ):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if method == "chat.postMessage":
            with self._cond:
                self._ts += 1
                ts = f"{self._ts:.6f}"
                msg = {
                    "channel": channel,
                    "ts": ts,
                    "text": args.get("text"),
                    "blocks": args.get("blocks"),
                    "thread_ts": args.get("thread_ts"),
                    "metadata": args.get("metadata"),
                }
                self.messages.append(msg)
                self._cond.notify_all()
            if fault is not None and fault.after_accept:
                time.sleep(fault.after_accept)  # accepted, but the answer comes late (or never)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": msg}, {}
        with self._cond:
            if method == "chat.update":
                for m in self.messages:
                    if m["ts"] == args.get("ts"):
                        m.update(text=args.get("text"), blocks=args.get("blocks"), edited=True)
                        return 200, {"ok": True, "channel": channel, "ts": m["ts"]}, {}
                return 200, {"ok": False, "error": "message_not_found"}, {}
            if method == "conversations.history":
                # As real Slack: top-level messages only, never replies in threads.
                msgs = [
                    m
                    for m in reversed(self.messages)
                    if m["channel"] == channel and m.get("thread_ts") in (None, m["ts"])
                ]
                return 200, {"ok": True, "messages": msgs[: int(args.get("limit") or 100)]}, {}
            if method == "conversations.replies":
                thread = args.get("ts")
                msgs = [
                    m
                    for m in self.messages
                    if m["channel"] == channel
                    and (m["ts"] == thread or m.get("thread_ts") == thread)
                ]
                return 200, {"ok": True, "messages": msgs[: int(args.get("limit") or 100)]}, {}
        return 404, {"ok": False, "error": "unknown_method"}, {}


class _Handler(BaseHTTPRequestHandler):
    slack: FakeSlack
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _serve(self, body: bytes) -> None:
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        ctype = self.headers.get("Content-Type", "")
        args: dict[str, Any] = {}
        if body and "json" in ctype:
            try:
                args = json.loads(body)
            except ValueError:
                args = {}
        elif body:
            args = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if "?" in self.path:
            args.update({k: v[-1] for k, v in parse_qs(self.path.split("?", 1)[1]).items()})
        status, doc, headers = self.slack.handle(method, self.headers.get("Authorization"), args)
        with self.slack._cond:
            self.slack.calls.append((method, status))
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length else b"")

    def do_GET(self) -> None:
        self._serve(b"")
