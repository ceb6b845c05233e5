"""Parse what `rbd mirror ...` prints. Pure functions, tested on real Ceph Pacific captures.

Nothing here decides that something is healthy unless every part of it is known: an unknown
state word, prefix or field is kept verbatim and classified ``unknown``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditd import codec
from auditd.sources.text import storable

# librbd's rbd_mirror_image_status_state_t, in enum order.
KNOWN_STATES = frozenset(
    {"unknown", "error", "syncing", "starting_replay", "replaying", "stopping_replay", "stopped"}
)
PRIMARY_LEAD = "local image is primary"
# What a site's rbd-mirror writes after `rbd mirror image promote --force` (snapshot/Replayer.cc,
# Pacific to Tentacle): "orphan (force promoting)" (seen on Pacific ~2 s after the promote
# returns, before "local image is primary" ~5 s later), or "force promoted". The image is
# primary, promoted without its peer's demotion: taking it as primary dates the promotion to
# this record, so split brain is judged on it instead of on the next rewrite.
FORCED_PRIMARY_LEADS = frozenset({"orphan (force promoting)", "force promoted"})
_NON_PRIMARY_LEADS = frozenset({"remote image is not primary", "remote image demoted"})
_REPLAYING_STATES = frozenset({"syncing", "starting_replay", "replaying", "stopping_replay"})
# What the image status fields are, so that anything else is kept as "extra".
_IMAGE_KEYS = frozenset(
    {"name", "global_id", "state", "description", "daemon_service", "last_update", "peer_sites"}
)


class RbdParseError(ValueError):
    """Output that is not what `rbd` prints for this command."""


@dataclass(frozen=True, slots=True)
class SiteState:
    """One site's mirror status of an image: ``up+replaying, {json}`` and friends."""

    raw: str  # verbatim, e.g. "up+replaying"
    up: bool | None  # the rbd-mirror daemon reporting it is alive; None if the prefix is unknown
    state: str  # the state word, verbatim
    description: str
    lead: str  # the description before its embedded JSON, e.g. "replaying"
    replay: dict[str, Any] | None  # the JSON embedded in the description (snapshot mode)
    last_update: datetime | None

    @property
    def known(self) -> bool:
        return self.up is not None and self.state in KNOWN_STATES

    def age(self, now: datetime) -> timedelta | None:
        return now - self.last_update if self.last_update else None


@dataclass(frozen=True, slots=True)
class PeerSite:
    site_name: str
    mirror_uuids: str
    status: SiteState


@dataclass(frozen=True, slots=True)
class ImageStatus:
    name: str
    global_id: str
    local: SiteState
    peers: tuple[PeerSite, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know

    @property
    def primary(self) -> bool | None:
        """Whether the local image is primary, when the status says so; None when it cannot tell."""
        lead, state = self.local.lead, self.local.state
        if lead == PRIMARY_LEAD or lead in FORCED_PRIMARY_LEADS:
            return True
        if lead in _NON_PRIMARY_LEADS or state in _REPLAYING_STATES:
            return False
        if state == "error" and "split-brain" in self.local.description:
            return False  # a demoted old primary that diverged
        return None

    def replay_info(self) -> dict[str, Any] | None:
        """Snapshot-replay metrics: on the secondary in its own description, on the primary in
        the peer's."""
        if self.local.replay is not None:
            return self.local.replay
        return next((p.status.replay for p in self.peers if p.status.replay is not None), None)


@dataclass(frozen=True)
class PoolStatus:
    health: str
    daemon_health: str
    image_health: str
    states: dict[str, int]
    daemons: list[dict[str, Any]]
    images: list[ImageStatus]


@dataclass(frozen=True)
class PoolInfo:
    mode: str
    site_name: str | None
    peers: list[dict[str, Any]]


@dataclass(frozen=True)
class ScheduleStatus:
    image: str
    schedule_time: datetime | None


_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def parse_time(text: Any) -> datetime | None:
    """`rbd` prints last_update as 'YYYY-MM-DD HH:MM:SS' in the cluster's clock; we read it as UTC."""
    # fromisoformat is ~20x faster than strptime; the regex keeps the accepted form exact.
    if not isinstance(text, str) or not _TIME.match(text):
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


def _shared(text: str) -> str:
    """A short text that thousands of images repeat (a state, a description's lead, a site's
    name, a key of the embedded JSON), held once (sys.intern: freed once nothing uses it).
    Decoded, each image would keep its own copy, and the inventory's facts built from it
    after: at 10,000 images per site, megabytes of identical strings allocated at every
    probe between the probe's short-lived objects, each pinning an allocator arena that
    would otherwise be given back (bench/rbd_parse.py prints what a status keeps)."""
    return sys.intern(text) if len(text) <= 64 else text


_EMBEDDED = re.compile(r"^(?P<lead>[^{]*?),\s*(?P<json>\{.*\})\s*$", re.S)


def split_description(description: str) -> tuple[str, dict[str, Any] | None]:
    """'replaying, {"bytes_per_second":...}' -> ('replaying', {...}); others -> (text, None)."""
    if "{" not in description:
        return _shared(description.strip()), None
    m = _EMBEDDED.match(description)
    if m:
        try:
            data = _decode(m.group("json"))
            if isinstance(data, dict):
                return _shared(m.group("lead").strip()), {
                    _shared(k): _shared(v) if isinstance(v, str) else v for k, v in data.items()
                }
        except ValueError:
            pass
    return _shared(description.strip()), None


def parse_site_state(state: Any, description: Any, last_update: Any) -> SiteState:
    raw = _shared(state if isinstance(state, str) else json.dumps(state))
    prefix, sep, word = raw.partition("+")
    word = _shared(word)
    up = {"up": True, "down": False}.get(prefix) if sep else None
    desc = _shared(description) if isinstance(description, str) else ""
    lead, replay = split_description(desc)
    return SiteState(raw, up, word if sep else raw, desc, lead, replay, parse_time(last_update))


def _image(doc: Any) -> ImageStatus:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise RbdParseError("image entry without a name")
    peers = []
    for p in doc.get("peer_sites") or []:
        if isinstance(p, dict):
            peers.append(
                PeerSite(
                    _shared(str(p.get("site_name", ""))),
                    # "mirror_uuids" up to Reef, "mirror_uuid" from Tentacle on.
                    _shared(str(p.get("mirror_uuids", p.get("mirror_uuid", "")))),
                    parse_site_state(p.get("state"), p.get("description"), p.get("last_update")),
                )
            )
    return ImageStatus(
        name=doc["name"],
        global_id=str(doc.get("global_id", "")),
        local=parse_site_state(doc.get("state"), doc.get("description"), doc.get("last_update")),
        peers=tuple(peers),
        extra={k: v for k, v in doc.items() if k not in _IMAGE_KEYS},
    )


def _load(text: str | bytes) -> Any:
    try:
        return _decode(text)
    except json.JSONDecodeError as e:
        raise RbdParseError(f"not JSON: {e.msg} at {e.pos}") from None
    except ValueError as e:  # undecodable bytes
        raise RbdParseError(f"not JSON: {type(e).__name__}") from None


def _decode(text: str | bytes) -> Any:
    """json.loads, every string made storable. Strict JSON cannot carry a NUL or a lone
    surrogate but as a \\u escape, and ASCII text without one decodes to ASCII strings
    without NUL: then the walk over every string (half of a 10,000-image pool's parse, and a
    second copy of its dicts in memory) has nothing to change."""
    doc = codec.loads(text)
    if isinstance(text, bytes):
        plain = text.isascii() and b"\\u" not in text
    else:
        plain = text.isascii() and "\\u" not in text
    return doc if plain else _storable(doc)


def _storable(doc: Any) -> Any:
    """Every string of a parsed document made storable (a NUL or a lone surrogate escaped as
    ``\\u0000`` in rbd's JSON would otherwise reach the history database as is)."""
    if isinstance(doc, str):
        return storable(doc)
    if isinstance(doc, dict):
        return {storable(str(k)): _storable(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_storable(v) for v in doc]
    return doc


def parse_pool_status(text: str | bytes) -> PoolStatus:
    """`rbd mirror pool status POOL --verbose --format json`."""
    doc = _load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict):
        raise RbdParseError("no summary in pool status")
    s = doc["summary"]
    states = s.get("states") or {}
    return PoolStatus(
        health=str(s.get("health", "")),
        daemon_health=str(s.get("daemon_health", "")),
        image_health=str(s.get("image_health", "")),
        states={str(k): int(v) for k, v in states.items()} if isinstance(states, dict) else {},
        daemons=[d for d in doc.get("daemons") or [] if isinstance(d, dict)],
        images=[_image(i) for i in doc.get("images") or []],
    )


def parse_pool_info(text: str | bytes) -> PoolInfo:
    """`rbd mirror pool info POOL --format json`."""
    doc = _load(text)
    if not isinstance(doc, dict) or "mode" not in doc:
        raise RbdParseError("no mode in pool info")
    return PoolInfo(
        str(doc["mode"]),
        doc.get("site_name"),
        [p for p in doc.get("peers") or [] if isinstance(p, dict)],
    )


def parse_schedule_status(text: str | bytes) -> list[ScheduleStatus]:
    """`rbd mirror snapshot schedule status --pool POOL --format json`."""
    doc = _load(text)
    if not isinstance(doc, list):
        raise RbdParseError("schedule status is not a list")
    return [
        ScheduleStatus(str(d.get("image", "")), parse_time(d.get("schedule_time")))
        for d in doc
        if isinstance(d, dict)
    ]


# ------------------------------------------------------------------ verdicts
def classify(image: ImageStatus, now: datetime, stale_after: timedelta) -> str:
    """healthy | degraded | error | stale | unknown. Only a fully known steady state is healthy:
    primary and up+stopped, or non-primary and up+replaying, reported recently."""
    local = image.local
    if not local.known:
        return "unknown"
    age = local.age(now)
    if age is None:
        return "unknown"
    if age > stale_after:
        return "stale"  # a killed rbd-mirror keeps reporting its last state for a while
    if local.state == "error":
        return "error"
    if not local.up:
        return "unknown"
    primary = image.primary
    if (primary is True and local.state == "stopped") or (
        primary is False and local.state == "replaying"
    ):
        return "healthy"
    if primary is None or local.state == "unknown":
        return "unknown"
    return "degraded"


def lag_seconds(image: ImageStatus, now: datetime) -> float | None:
    """Now minus the last snapshot the secondary has synced (its local_snapshot_timestamp)."""
    info = image.replay_info()
    if not info:
        return None
    ts = info.get("local_snapshot_timestamp")
    if not isinstance(ts, int | float):
        return None
    return max(0.0, now.timestamp() - float(ts))
