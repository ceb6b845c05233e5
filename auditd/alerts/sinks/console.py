"""Print notifications to a stream: the demo, dry runs, and teams that tail logs."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from auditd.alerts.message import Message
from auditd.alerts.render_group import words
from auditd.alerts.sinks.base import Refresher, SendResult

log = logging.getLogger(__name__)


class ConsoleSink:
    name = "console"
    grouped = True
    refresher: Refresher | None = None

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def completed(self, message: Message, parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None  # a line printed twice after a crash is harmless

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        text = words(message).text
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(f"[alert] {text}\n")
            stream.flush()
        return SendResult(ok=True)


class LogSink:
    """Logs each notification instead of sending it: `auditd run --dry-run`."""

    name = "log"
    grouped = True
    refresher: Refresher | None = None

    def completed(self, message: Message, parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        rule = getattr(message, "rule", None)
        log.warning("dry run, not sent: %s", words(message).text, extra={"rule": rule})
        return SendResult(ok=True, external_id=f"dry-run:{key}")
