"""Storm control: the rbd-mirror daemon dies under 500 images. Pool-level alerts go out; the
500 per-image alerts are inhibited (recorded, not sent). Counted in Slack calls."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, select

from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.slack import SlackSink
from auditd.config import AlertsConfig, parse_config
from auditd.daemon.ingest import Ingestor, Tick
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.sim.fakeslack import FakeSlack
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow

DATA = Path(__file__).parent / "data" / "rbd"
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


def test_daemon_down_under_500_images_is_two_messages_not_500(
    tmp_path: Path, slack: FakeSlack
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    config = parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
        }
    )
    ingest = Ingestor(sessions, Inventory(), RuleEngine(config), {}, ["slack"])
    sink = SlackSink(SecretStr(slack.token), "#dr-alerts", slack.base_url, 5)
    dispatcher = Dispatcher(sessions, {"slack": sink}, AlertsConfig())
    # Far past the captures' timestamps would make every status stale; run "at" capture time.
    t0 = datetime(2026, 11, 26, 9, 48, 30, tzinfo=UTC)

    def cycle(minutes: float, scenario: str) -> None:
        now = t0 + timedelta(minutes=minutes)
        ingest.process(
            [
                scaled(scenario, "site-a", "dr1", now),
                scaled(scenario, "site-b", "dr2", now),
                Tick(now),
            ],
            now,
        )
        dispatcher.drain_once(now=datetime.now(UTC))

    cycle(0, "healthy")
    for minute in range(1, 9):  # past every for-duration (pool 2 min, per-image 5 min)
        cycle(minute, "mirror-daemon-down-t65s")
    posts = [c for c in slack.calls if c[0] == "chat.postMessage"]
    assert len(posts) == 2, [m["text"][:80] for m in slack.messages]
    assert all("pool-mirroring-unhealthy" in m["text"] for m in slack.messages)
    with sessions() as s:
        held = s.scalar(
            select(func.count())
            .select_from(NotificationRow)
            .where(NotificationRow.status == "inhibited")
        )
    assert held == N  # every per-image alert is recorded, none sent
    for minute in range(9, 11):
        cycle(minute, "healthy")
    assert len(slack.messages) == 4
    replies = [m for m in slack.messages if m["thread_ts"]]
    assert len(replies) == 2 and all(m["text"].startswith("RESOLVED") for m in replies)
    assert sum(c[0] == "chat.update" for c in slack.calls) == 2  # parents edited to resolved
    engine.dispose()
