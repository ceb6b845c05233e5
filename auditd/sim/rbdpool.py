"""A healthy mirrored pool of N images, as `rbd mirror pool status --verbose` prints it at a
given instant: what a long run at scale probes (bench/soak.py), built from the real capture.

Each image is the healthy capture's one image renamed (csi-vol-00000 ...), with its times
moved as rbd-mirror moves them: a status record is rewritten every 30 s, image by image at its
own offset within the 30 s (so every probe finds about interval/30 of them rewritten), and the
snapshot schedule's last synced snapshot is the last whole minute. Replayed later, nothing
looks stale, and a probe sees what a real pool's rewrites look like.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from auditd.config import MIRROR_REFRESH
from auditd.sim.captures import CAPTURES, SITE, retime

REWRITE = int(MIRROR_REFRESH.total_seconds())  # rbd-mirror rewrites each status record this often
SNAPSHOT = 60  # seconds between mirror snapshots (the schedule's interval)
_REPLAYING = "replaying, "


def image_name(i: int) -> str:
    return f"csi-vol-{i:05d}"


def pool_status(cluster: str, images: int | range, at: datetime) -> str:
    """The status of healthy images on ``cluster``'s site (dr1 primary, dr2 replaying), as
    printed at ``at``: images 0 to ``images`` - 1, or those of a range (a pool whose volumes
    come and go)."""
    path = CAPTURES / "healthy" / f"{SITE[cluster]}-mirror-pool-status-verbose.json"
    doc = json.loads(path.read_text())
    template = json.dumps(doc["images"][0])
    epoch = int(at.timestamp())
    snapshot = datetime.fromtimestamp(epoch - epoch % SNAPSHOT, UTC)
    out = []
    for i in range(images) if isinstance(images, int) else images:
        # Re-timed so that the newest record is this image's last rewrite, and the snapshot
        # timestamps (lag) move with it; then pinned to the last whole-minute snapshot.
        rewritten = datetime.fromtimestamp(epoch - (epoch - i) % REWRITE, UTC)
        image = json.loads(retime(template, rewritten))
        image["name"] = image_name(i)
        image["global_id"] = f"{i:08x}-a2af-4f92-81d1-62291b44b803"
        _pin_snapshots(image, snapshot)
        out.append(image)
    doc["images"] = out
    doc["summary"]["states"] = {str(out[0]["state"]).split("+")[1]: len(out)} if out else {}
    return json.dumps(doc)


def _pin_snapshots(image: dict[str, Any], snapshot: datetime) -> None:
    """Both snapshot timestamps in the replaying description (the image's own on the replaying
    site, its peer's on the primary) at ``snapshot``: a lag of under a minute, as in health."""
    stamp = int(snapshot.timestamp())
    for holder in [image, *image.get("peer_sites", [])]:
        text = str(holder.get("description", ""))
        if not text.startswith(_REPLAYING):
            continue
        detail = json.loads(text[len(_REPLAYING) :])
        detail["local_snapshot_timestamp"] = detail["remote_snapshot_timestamp"] = stamp
        holder["description"] = _REPLAYING + json.dumps(detail)
