"""The DR facts of RBD probe results, as pseudo-kinds RbdImage and RbdPool.

Only states are facts: a change of an image's state is a transition, an unchanged one is not.
Lag and bytes/s change every cycle; they are sampled measurements, not facts.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

from auditd.inventory.facts import Facts
from auditd.sources.rbd.parse import ImageStatus, PoolInfo, PoolStatus, ScheduleStatus, classify

RBD_IMAGE = "RbdImage"
RBD_POOL = "RbdPool"


def _bool(value: bool | None) -> str:
    return "unknown" if value is None else ("true" if value else "false")


def image_facts(image: ImageStatus, now: datetime, stale_after: timedelta) -> Facts:
    facts: Facts = {
        "global_id": image.global_id or None,
        "state": image.local.raw,
        "primary": _bool(image.primary),
        # The words before any progress detail ("bootstrapping, IMAGE_SYNC 50%"), so that
        # progress is not a transition on every cycle.
        "description": image.local.lead.split(",")[0].strip() or None,
        "class": classify(image, now, stale_after),
    }
    for peer in image.peers:
        # One key string for every image of the pool, not one each (the inventory keeps them).
        facts[sys.intern(f"peer.{peer.site_name}")] = peer.status.raw
    return facts


def pool_status_facts(status: PoolStatus) -> Facts:
    return {
        "probe": "ok",
        "probe_error": None,
        "probe_failing_since": None,
        "health": status.health,
        "daemon_health": status.daemon_health,
        "image_health": status.image_health,
        "states": json.dumps(status.states, sort_keys=True, separators=(",", ":")),
        "images": str(len(status.images)),
    }


def pool_info_facts(info: PoolInfo, schedules: list[ScheduleStatus]) -> Facts:
    return {
        "info_probe": "ok",
        "mode": info.mode,
        "site_name": info.site_name,
        "peers": ",".join(sorted(str(p.get("site_name", "")) for p in info.peers)) or None,
        "scheduled_images": str(len(schedules)),
    }
