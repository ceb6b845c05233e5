"""Sinks that POST JSON: a generic webhook, and an Alertmanager-compatible one.

Standard library HTTP only. 2xx is delivered; 429 and 5xx are retried (Retry-After honoured);
other 4xx are permanent; connection errors and timeouts are retried. URLs may carry tokens,
so they are SecretStr and never appear in errors.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from auditd.alerts.message import Alert, Message
from auditd.alerts.render import render_alert
from auditd.alerts.sinks.base import Refresher, SendResult
from auditd.clock import SYSTEM, Clock
from auditd.retry_after import retry_after as read_retry_after


def _post(url: str, body: Any, timeout: float, what: str) -> SendResult:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "auditd"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
        return SendResult(ok=True)
    except urllib.error.HTTPError as e:
        retry_after = read_retry_after(e.headers, 1.0) if e.code == 429 else None
        transient = e.code == 429 or e.code >= 500
        return SendResult(
            ok=False,
            error=f"{what}: HTTP {e.code}",
            permanent=not transient,
            retry_after=retry_after,
        )
    except (urllib.error.URLError, OSError, ValueError) as e:
        return SendResult(ok=False, error=f"{what} unreachable: {type(e).__name__}")


def _not_an_alert(what: str) -> SendResult:
    # Only grouping sinks are given incidents: this is a wiring error, and retrying cannot help.
    return SendResult(ok=False, error=f"{what}: given an incident, takes alerts", permanent=True)


class WebhookSink:
    """POSTs one alert as JSON (schema ``version`` 1: key, event, rule, subject, severity,
    summary, labels, evidence, verify, runbook_url, times, and a ``text`` line) to a URL of the
    team's choosing."""

    name = "webhook"
    grouped = False  # machine consumers get one alert per violation, to route on its labels
    refresher: Refresher | None = None

    def __init__(self, url: SecretStr, timeout: float = 10) -> None:
        self._url = url
        self.timeout = timeout

    def completed(self, message: Message, parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None  # receivers deduplicate on "key"

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        if not isinstance(message, Alert):
            return _not_an_alert("webhook")
        body = {
            **{k: v for k, v in message.to_json().items() if k != "v"},
            "version": 1,
            "key": key,
            "runbook_url": message.runbook_url,
            "text": render_alert(message).text,
        }
        return _post(self._url.get_secret_value(), body, self.timeout, "webhook")


class AlertmanagerSink:
    """An Alertmanager (API v2) as a sink, so teams route auditd through their own routing.

    The client contract Prometheus follows: a firing alert is sent again every
    ``every`` with ``endsAt`` a few intervals ahead (else Alertmanager resolves it after
    its resolve_timeout, 5 minutes by default: a split brain would read resolved there), and a
    resolve carries ``endsAt`` = the time it resolved. Alertmanager deduplicates by labels, so
    a resend after a crash is harmless.
    """

    name = "alertmanager"
    grouped = False  # Alertmanager groups (and inhibits) by itself
    every = timedelta(minutes=1)  # its refresher's: firing alerts re-sent this often

    def __init__(self, url: SecretStr, timeout: float = 10, clock: Clock = SYSTEM) -> None:
        self._url = url
        self.timeout = timeout
        self.clock = clock
        self.refresher: Refresher | None = self

    def completed(self, message: Message, parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None

    def alert(self, a: Alert, now: datetime) -> dict[str, Any]:
        """One Alertmanager alert, as of ``now``."""
        labels = {k: str(v) for k, v in a.labels.items() if v}
        labels.pop("rule", None)
        labels["alertname"] = a.rule or "auditd"
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": render_alert(a).text,
                "verify": a.verify,
                "runbook_url": a.runbook_url,
            },
            "generatorURL": f"auditd://explain/{quote(a.subject, safe='/')}",
            "startsAt": (a.fired_at or now).isoformat(),
        }
        if a.event == "resolved":
            alert["endsAt"] = (a.resolved_at or now).isoformat()
        else:
            alert["endsAt"] = (now + 4 * self.every).isoformat()
        return alert

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        if not isinstance(message, Alert):
            return _not_an_alert("alertmanager")
        return self.post([self.alert(message, self.clock.now())])

    def resend(self, alerts: list[Alert], now: datetime) -> SendResult:
        return self.post([self.alert(a, now) for a in alerts])

    def post(self, alerts: list[dict[str, Any]]) -> SendResult:
        base = self._url.get_secret_value().rstrip("/")
        return _post(f"{base}/api/v2/alerts", alerts, self.timeout, "alertmanager")
