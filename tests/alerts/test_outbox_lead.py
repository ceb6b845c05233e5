"""The outbox dispatcher losing the lead in the middle of a pass (daemon/leader.py's fence
refuses its commit: a database outage took the election session, or another replica took
over) is expected, not a bug: it logged "outbox pass failed" with a traceback once in a
dozen runs of tests/daemon/test_db_outage.py, and what it was delivering must stay in the
outbox for whoever leads."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from outbox_box import Outbox
from sqlalchemy import event
from sqlalchemy.orm import Session

from auditd.clock import ManualClock
from auditd.sim.fakeslack import FakeSlack
from auditd.store.errors import NotLeader

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_lead_lost_mid_pass_is_said_plainly_and_loses_nothing(
    tmp_path: Path, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path, slack, group_wait=timedelta(0), group_interval=timedelta(0))
    box.dispatcher.clock = ManualClock(T + timedelta(minutes=1))
    box.fire("img-1", T)

    def fence(session: Session) -> None:  # as the leader's fence refuses a commit
        raise NotLeader("not the leader of global")

    event.listen(box.sessions, "before_commit", fence)
    caplog.set_level(logging.INFO, logger="auditd.alerts.outbox")
    thread = threading.Thread(target=box.dispatcher.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not any("no longer leading" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.05)  # the dispatcher's first pass has not reached its commit yet
    box.dispatcher.stop()
    thread.join(10)
    assert not thread.is_alive()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    assert box.posts() == []  # refused before anything was marked sending, so nothing sent

    event.remove(box.sessions, "before_commit", fence)  # leading again: delivered, once
    box.dispatcher.drain_once(now=T + timedelta(minutes=2))
    assert len(box.posts()) == 1, box.posts()
    box.engine.dispose()
