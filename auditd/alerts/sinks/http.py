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


class WebhookSink:
    """POSTs {"key", "event", "labels", "text", ...} to a URL of the team's choosing."""

    name = "webhook"
    grouped = False  # machine consumers get one alert per violation, to route on its labels
    refresher: Refresher | None = None

    def __init__(self, url: SecretStr, timeout: float = 10) -> None:
        self._url = url
        self.timeout = timeout

    def completed(self, payload: dict[str, Any], parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None  # receivers deduplicate on "key"

    def send(self, payload: dict[str, Any], key: str, parent: str | None = None) -> SendResult:
        body = {
            "version": 1,
            "key": key,
            **{k: v for k, v in payload.items() if k not in ("blocks", "parent")},
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

    def completed(self, payload: dict[str, Any], parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None

    def alert(self, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        """One Alertmanager alert from a notification payload, as of ``now``."""
        labels = {k: v for k, v in (payload.get("labels") or {}).items() if v}
        labels["alertname"] = labels.pop("rule", payload.get("rule", "auditd"))
        subject = str(payload.get("subject") or labels.get("subject") or "")
        alert: dict[str, Any] = {
            "labels": {k: str(v) for k, v in labels.items()},
            "annotations": {
                "summary": str(payload.get("text", "")),
                "verify": str(payload.get("verify") or ""),
                "runbook_url": str(payload.get("runbook_url") or ""),
            },
            "generatorURL": f"auditd://explain/{quote(subject, safe='/')}",
            "startsAt": payload.get("fired_at") or now.isoformat(),
        }
        if payload.get("event") == "resolved":
            alert["endsAt"] = payload.get("resolved_at") or now.isoformat()
        else:
            alert["endsAt"] = (now + 4 * self.every).isoformat()
        return alert

    def send(self, payload: dict[str, Any], key: str, parent: str | None = None) -> SendResult:
        return self.post([self.alert(payload, self.clock.now())])

    def resend(self, payloads: list[dict[str, Any]], now: datetime) -> SendResult:
        return self.post([self.alert(p, now) for p in payloads])

    def post(self, alerts: list[dict[str, Any]]) -> SendResult:
        base = self._url.get_secret_value().rstrip("/")
        return _post(f"{base}/api/v2/alerts", alerts, self.timeout, "alertmanager")
