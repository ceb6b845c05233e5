"""The interface every notification sink implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from auditd.alerts.message import Alert, Message


@dataclass(frozen=True)
class SendResult:
    ok: bool
    external_id: str | None = None  # e.g. the Slack message ts
    error: str | None = None  # safe to store and log: never carries a secret
    permanent: bool = False  # retrying cannot help (bad token, unknown channel)
    retry_after: float | None = None


class Refresher(Protocol):
    """What a sink that forgets a firing alert unless it is told again (Alertmanager, after
    its resolve_timeout) offers the outbox: every alert still firing, re-sent each ``every``."""

    every: timedelta

    def resend(self, alerts: list[Alert], now: datetime) -> SendResult: ...


class Sink(Protocol):
    name: str
    # True: the outbox groups alerts into incidents for this sink (one message per incident).
    # False: every alert is sent on its own (receivers that group themselves, like Alertmanager).
    grouped: bool
    # Set by sinks that forget what they are not told again; None for the rest.
    refresher: Refresher | None

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        """Deliver, in the sink's own words; ``key`` identifies the notification (sinks that
        can, attach it). A sink that is not ``grouped`` gets only alerts.
        ``parent`` is the external id of the incident's first message, for threading."""
        ...

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        """After a crash mid-send: the external id of a delivery already made with this key,
        or None if there is none (or the sink cannot tell: then it is sent again). ``parent``:
        the message it replies to (a reply is in its thread, not in the channel's history)."""
        ...

    def completed(self, message: Message, parent: str | None) -> None:
        """A delivery found by find_sent after a crash: finish what send would have done after
        posting (edit the incident's parent message to its current state)."""
        ...
