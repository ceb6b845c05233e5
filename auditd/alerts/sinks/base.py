"""The interface every notification sink implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SendResult:
    ok: bool
    external_id: str | None = None  # e.g. the Slack message ts
    error: str | None = None  # safe to store and log: never carries a secret
    permanent: bool = False  # retrying cannot help (bad token, unknown channel)
    retry_after: float | None = None


class Sink(Protocol):
    name: str

    def send(self, payload: dict[str, Any]) -> SendResult: ...
