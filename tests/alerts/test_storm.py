"""Storm control: the rbd-mirror daemon dies under 500 images. Counted in Slack calls.

With the pool-level rule on, the per-image alerts are inhibited (recorded, not sent) and the
pool alerts of both sites are one incident. With it off, grouping alone turns the 500 per-image
alerts into one pair-level message with counts."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from paths import RBD
from pydantic import SecretStr
from sqlalchemy import func, select

from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.slack import SlackSink
from auditd.clock import SYSTEM
from auditd.config import AlertsConfig, parse_config
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Tick
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim.fakeslack import FakeSlack
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow

DATA = RBD
N = 500


def scaled(scenario: str, site: str, cluster: str, at: datetime) -> ProbeResult:
    doc = json.loads((DATA / scenario / f"{site}-mirror-pool-status-verbose.json").read_text())
    template = doc["images"][0]
    images = []
    for i in range(N):
        img = copy.deepcopy(template)
        img["name"] = f"csi-vol-{i:04d}"
        img["global_id"] = f"{i:08x}-0000-0000-0000-000000000000"
        images.append(img)
    doc["images"] = images
    return ProbeResult(
        cluster, "replicapool", "status", at, 0.1, status=parse_pool_status(json.dumps(doc))
    )


class Storm:
    """Ingest, rules and the outbox on SQLite; the probes replay the daemon-down captures."""

    def __init__(self, tmp_path: Path, slack: FakeSlack, rules: dict[str, Any]) -> None:
        url = f"sqlite:///{tmp_path / 'h.db'}"
        upgrade(url)
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        config = parse_config(
            {
                "clusters": [
                    {"name": "dr1", "role": "primary"},
                    {"name": "dr2", "role": "secondary"},
                ],
                "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
                "rules": rules,
            }
        )
        self.ingest = Ingestor(self.sessions, Inventory(), RuleEngine(config), {}, ["slack"])
        sink = SlackSink(SecretStr(slack.token), "#dr-alerts", slack.base_url, 5)
        self.dispatcher = Dispatcher(
            self.sessions, {"slack": sink}, AlertsConfig(group_wait=timedelta(0))
        )
        # Far past the captures' timestamps would make every status stale; run "at" capture time.
        self.t0 = datetime(2026, 11, 26, 9, 48, 30, tzinfo=UTC)

    def cycle(self, minutes: float, scenario: str) -> None:
        now = self.t0 + timedelta(minutes=minutes)
        self.ingest.process(
            [
                scaled(scenario, "site-a", "dr1", now),
                scaled(scenario, "site-b", "dr2", now),
                Tick(now),
            ],
            now,
        )
        # group_interval is 1 minute, and each cycle is one: every cycle may announce.
        self.dispatcher.drain_once(now=SYSTEM.now() + timedelta(minutes=minutes))

    def count(self, status: str) -> int:
        with self.sessions() as s:
            return s.scalar(  # type: ignore[no-any-return]
                select(func.count())
                .select_from(NotificationRow)
                .where(NotificationRow.status == status)
            )

    def story(self) -> None:
        self.cycle(0, "healthy")
        for minute in range(1, 9):  # past every for-duration (pool 2 min, per-image 5 min)
            self.cycle(minute, "mirror-daemon-down-t65s")


def test_daemon_down_under_500_images_is_one_pool_message_not_500(
    tmp_path: Path, slack: FakeSlack
) -> None:
    storm = Storm(tmp_path, slack, {})
    storm.story()
    posts = [c for c in slack.calls if c[0] == "chat.postMessage"]
    # The pool alerts of both sites are one incident (pair and rule); nothing per image.
    assert len(posts) == 1, [m["text"][:80] for m in slack.messages]
    assert "pool-mirroring-unhealthy" in slack.messages[0]["text"]
    assert "2 pools" in slack.messages[0]["text"]
    assert storm.count("inhibited") == N  # every per-image alert is recorded, none sent
    for minute in range(9, 11):
        storm.cycle(minute, "healthy")
    assert len(slack.messages) == 2
    reply = slack.messages[1]
    assert reply["thread_ts"] == slack.messages[0]["ts"] and reply["text"].startswith("RESOLVED")
    assert sum(c[0] == "chat.update" for c in slack.calls) == 1  # parent edited to resolved
    storm.engine.dispose()


def test_without_a_pool_level_parent_500_images_are_one_grouped_message(
    tmp_path: Path, slack: FakeSlack
) -> None:
    storm = Storm(tmp_path, slack, {"pool-mirroring-unhealthy": {"enabled": False}})
    storm.story()
    posts = [c for c in slack.calls if c[0] == "chat.postMessage"]
    assert len(posts) == 1, [m["text"][:80] for m in slack.messages]
    first = slack.messages[0]
    assert first["text"].startswith(f"FIRING [warning] secondary-not-replaying: {N} volumes")
    # Counts and a bounded list, not 500 lines: well under Slack's 50-block limit.
    body = json.dumps(first["blocks"])
    assert f"{N} of {N} volumes firing" in body and f"and {N - 10} more" in body
    assert len(first["blocks"]) <= 6
    assert storm.count("grouped") == N and storm.count("inhibited") == 0
    for minute in range(9, 11):
        storm.cycle(minute, "healthy")
    posts = [c for c in slack.calls if c[0] == "chat.postMessage"]
    assert len(posts) == 2  # the one resolve, in the thread
    assert slack.messages[1]["thread_ts"] == first["ts"]
    assert f"all {N} volumes recovered" in slack.messages[1]["text"]
    assert sum(c[0] == "chat.update" for c in slack.calls) == 1
    storm.engine.dispose()
