"""What the notify stages share: one pass's time, its budget, and what a stage tells the next.

As Alertmanager's ``notify.MultiStage``: the outbox runs route -> flush -> deliver -> refresh
in order on one ``Pass``; each stage keeps its own state in the database, so a restart between
any two of them changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass
class Pass:
    now: datetime
    # time.monotonic() at which delivery stops (the final flush at shutdown); None: it stops
    # when the dispatcher is stopping.
    deadline: float | None
    stopping: Callable[[], bool]
    # Alerts of grouping sinks that still go out on their own (route -> deliver).
    alone: set[int] = field(default_factory=set)
    sent: int = 0

    def out_of_time(self) -> bool:
        if self.deadline is None:
            return self.stopping()
        return time.monotonic() > self.deadline


class Stage(Protocol):
    def run(self, p: Pass) -> None: ...
