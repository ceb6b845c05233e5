"""A dead man's switch outside Prometheus: ping a URL while auditd audits.

Heartbeat receivers (healthchecks.io, Opsgenie and PagerDuty heartbeats, Uptime Kuma push
monitors) alarm when the pings stop. auditd pings only while it is worth trusting: the
replica that sends alerts, with its writer alive and its history writable. A silent auditd,
a stuck one and one whose alerts cannot go out all look the same from outside: no ping.

The URL usually carries the receiver's token: it is never logged, only the error's kind.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from pydantic import SecretStr

from auditd import __version__
from auditd.logs import Spell

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        url: SecretStr,
        healthy: Callable[[], tuple[bool, str]],
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self.healthy = healthy
        self.timeout = timeout
        self.sent = 0
        self._spell = Spell(log, "heartbeat")
        self._withheld: str | None = None

    def beat(self) -> bool:
        """One ping if healthy. True when the receiver answered 2xx."""
        ok, why = self.healthy()
        if not ok:
            if why and self._withheld != why:  # why is "" on a standby: nothing wrong
                log.warning("heartbeat withheld: %s", why)
            self._withheld = why
            return False
        self._withheld = None
        request = urllib.request.Request(
            self._url.get_secret_value(), headers={"User-Agent": f"auditd/{__version__}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
        except urllib.error.HTTPError as e:
            self._spell.failed(f"the receiver answered HTTP {e.code}", time.monotonic())
            return False
        except (urllib.error.URLError, OSError, ValueError) as e:
            # Not str(e): a URLError's text can quote the URL, token included.
            reason = getattr(e, "reason", None)
            kind = type(reason).__name__ if isinstance(reason, BaseException) else type(e).__name__
            self._spell.failed(f"cannot reach the receiver ({kind})", time.monotonic())
            return False
        self._spell.succeeded(time.monotonic())
        self.sent += 1
        return True
