"""Print notifications to a stream: the demo, dry runs, and teams that tail logs."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from auditd.alerts.sinks.base import SendResult


class ConsoleSink:
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, payload: dict[str, Any]) -> SendResult:
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(f"[alert] {payload['text']}\n")
            stream.flush()
        return SendResult(ok=True)
