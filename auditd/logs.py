"""Structured logging (text or JSON) with a last-line-of-defence secret scrubber."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

# Extra fields the code passes with `extra=` and that we want in every format.
_FIELDS = ("cluster", "kind", "rule", "pair", "sink")
# Token shapes that must never be printed, even if some library logs a header.
_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(key\s*=\s*)[A-Za-z0-9+/=]{20,}"),  # cephx keyring lines
]
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Scrub this exact value from every log line from now on."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    with _lock:
        secrets = list(_secrets)
    for s in secrets:
        text = text.replace(s, "**********")
    for p in _PATTERNS:
        text = p.sub(lambda m: (m.group(1) if m.groups() else "") + "**********", text)
    return text


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{f}={getattr(record, f)}" for f in _FIELDS if hasattr(record, f))
        line = f"{ts}Z {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for f in _FIELDS:
            if hasattr(record, f):
                doc[f] = getattr(record, f)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc, default=str))


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if fmt == "json" else _Text())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # These log request details (headers included) at DEBUG; never let them.
    for noisy in ("slack_sdk", "urllib3", "kubernetes", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # urllib3 warns on each of its own retries; the watcher says once that a stream is bad.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class Spell:
    """How a background loop logs a failure that may last: one line when it goes bad, a
    summary every ``summary_every`` seconds while it stays bad, one line when it recovers.
    A database or cluster outage is one story in the log, not a traceback per retry.

    Times are monotonic seconds (durations, never audit times).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str = "",
        summary_every: float = 300.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``what`` names the loop in each line; leave it empty when ``extra`` already says
        (a watch stream's cluster and kind)."""
        self.log, self.every = logger, summary_every
        self._prefix = f"{what} " if what else ""
        self.extra = extra or {}
        self.since: float | None = None
        self._summarized = 0.0
        self.failures = 0

    @property
    def bad(self) -> bool:
        return self.since is not None

    def failed(self, error: str, now: float, level: int = logging.WARNING) -> bool:
        """Count a failure; True when it was logged (the first of a spell, or a summary)."""
        self.failures += 1
        if self.since is None:
            self.since = self._summarized = now
            self.log.log(level, f"{self._prefix}failing: %s", error, extra=self.extra)
            return True
        if now - self._summarized >= self.every:
            self._summarized = now
            self.log.log(
                level,
                f"{self._prefix}still failing after %.0fs (%d failures): %s",
                now - self.since,
                self.failures,
                error,
                extra=self.extra,
            )
            return True
        return False

    def succeeded(self, now: float) -> None:
        if self.since is not None:
            self.log.info(
                f"{self._prefix}recovered after %.0fs (%d failures)",
                now - self.since,
                self.failures,
                extra=self.extra,
            )
        self.since, self.failures = None, 0


def describe(e: BaseException) -> str:
    """An exception as one short, safe line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return scrub(f"{type(e).__name__}: {text[0][:200]}") if text else type(e).__name__
