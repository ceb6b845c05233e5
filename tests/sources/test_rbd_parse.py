"""The RBD parsers on every real capture (tests/data/rbd, Ceph Pacific 16.2.15, two sites)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from paths import RBD

from auditd.sources.rbd.parse import (
    RbdParseError,
    classify,
    lag_seconds,
    parse_pool_info,
    parse_pool_status,
    parse_schedule_status,
    parse_time,
    split_description,
)

DATA = RBD
STALE = timedelta(minutes=3)  # three 60 s probe intervals
CAPTURED = {
    row["file"]: parse_time(row["captured_at"].replace("T", " ").rstrip("Z"))
    for row in csv.DictReader((DATA / "index.tsv").open(), delimiter="\t")
}
VERBOSE = sorted(DATA.glob("*/*-mirror-pool-status-verbose.json"))


def status_of(scenario: str, site: str):  # type: ignore[no-untyped-def]
    """The parsed capture, and when it was taken (index.tsv, else just after its newest update)."""
    rel = f"{scenario}/{site}-mirror-pool-status-verbose.json"
    status = parse_pool_status((DATA / rel).read_text())
    newest = max(
        t
        for i in status.images
        for t in [i.local.last_update, *(p.status.last_update for p in i.peers)]
        if t is not None
    )
    return status, CAPTURED.get(rel) or newest + timedelta(seconds=5)


@pytest.mark.parametrize("path", VERBOSE, ids=lambda p: f"{p.parent.name}/{p.name[:6]}")
def test_every_verbose_capture_parses_completely(path: Path) -> None:
    status = parse_pool_status(path.read_text())
    raw = json.loads(path.read_text())
    assert status.health == raw["summary"]["health"]
    assert [i.name for i in status.images] == [i["name"] for i in raw["images"]]
    for image in status.images:
        assert image.global_id and image.local.known and image.local.last_update is not None
        assert image.local.raw == next(i["state"] for i in raw["images"] if i["name"] == image.name)
        assert all(p.status.known for p in image.peers)
        assert image.extra == {}  # every field of Pacific's output is understood


# scenario, site, image state, primary, class, peer state
EXPECTED = [
    ("healthy", "site-a", "up+stopped", True, "healthy", "up+replaying"),
    ("healthy", "site-b", "up+replaying", False, "healthy", "up+stopped"),
    ("mirror-daemon-down-t65s", "site-b", "down+stopped", None, "unknown", "up+stopped"),
    ("mirror-daemon-killed-t45s", "site-b", "down+replaying", False, "unknown", "up+stopped"),
    ("mirror-daemon-killed-t45s", "site-a", "up+stopped", True, "healthy", "down+replaying"),
    ("failover-1-demoted-site-a", "site-a", "up+unknown", False, "unknown", "up+unknown"),
    ("failover-1-demoted-site-a", "site-b", "up+unknown", False, "unknown", "up+unknown"),
    ("failover-2-promoted-site-b", "site-b", "up+stopped", True, "healthy", "up+replaying"),
    ("failover-2-promoted-site-b", "site-a", "up+replaying", False, "healthy", "up+stopped"),
    ("split-brain-1-force-promoted-site-b", "site-a", "up+stopped", True, "healthy", "up+stopped"),
    ("split-brain-1-force-promoted-site-b", "site-b", "up+stopped", True, "healthy", "up+stopped"),
    ("split-brain-2-demoted-site-a", "site-a", "up+error", False, "error", "up+stopped"),
    ("split-brain-3-resynced", "site-a", "up+replaying", False, "healthy", "up+stopped"),
]


@pytest.mark.parametrize(("scenario", "site", "state", "primary", "klass", "peer"), EXPECTED)
def test_scenarios(
    scenario: str, site: str, state: str, primary: bool | None, klass: str, peer: str
) -> None:
    status, now = status_of(scenario, site)
    image = next(i for i in status.images if i.name == "csi-vol-0001")
    assert image.local.raw == state
    assert image.primary is primary
    assert classify(image, now, STALE) == klass
    assert [p.status.raw for p in image.peers] == [peer]


def test_pool_summary_when_the_secondary_daemon_is_down() -> None:
    b, _ = status_of("mirror-daemon-down-t65s", "site-b")
    assert (b.health, b.daemon_health) == ("UNKNOWN", "UNKNOWN") and b.daemons == []
    a, _ = status_of("mirror-daemon-down-t65s", "site-a")
    assert (a.health, a.image_health, a.states) == ("WARNING", "WARNING", {"unknown": 4})


def test_replay_metrics_and_lag() -> None:
    status, now = status_of("healthy", "site-b")
    image = status.images[0]
    assert image.local.lead == "replaying"
    info = image.replay_info()
    assert (
        info is not None
        and info["replay_state"] == "idle"
        and info["local_snapshot_timestamp"] == 1795686480
    )
    assert info["bytes_per_second"] == 279620.27 and info["last_snapshot_sync_seconds"] == 0
    assert lag_seconds(image, now) == now.timestamp() - 1795686480
    # On the primary the same metrics come from the peer's description.
    a, _ = status_of("healthy", "site-a")
    assert a.images[0].replay_info() == info


def test_description_before_first_sync_has_no_local_timestamp() -> None:
    status, now = status_of("failover-2-promoted-site-b", "site-a")
    for image in status.images:
        info = image.replay_info()
        if info is not None and "local_snapshot_timestamp" not in info:
            assert lag_seconds(image, now) is None
            return
    pytest.skip("every image had synced in this capture")


def test_a_status_that_stopped_updating_is_stale() -> None:
    status, now = status_of("healthy", "site-b")
    image = status.images[0]
    assert classify(image, now + timedelta(minutes=10), STALE) == "stale"


def test_unknown_states_and_fields_are_kept_and_never_healthy() -> None:
    raw = json.loads((DATA / "healthy" / "site-b-mirror-pool-status-verbose.json").read_text())
    raw["images"][0]["state"] = "up+resyncing_quantum"
    raw["images"][0]["new_field"] = {"x": 1}
    status = parse_pool_status(json.dumps(raw))
    image = status.images[0]
    assert image.local.raw == "up+resyncing_quantum" and image.local.state == "resyncing_quantum"
    assert image.extra == {"new_field": {"x": 1}}
    assert (
        classify(image, CAPTURED["healthy/site-b-mirror-pool-status-verbose.json"], STALE)
        == "unknown"
    )
    raw["images"][0]["state"] = "sideways+replaying"
    image = parse_pool_status(json.dumps(raw)).images[0]
    assert image.local.up is None and not image.local.known


@pytest.mark.parametrize(
    "garbage", [b"", b"garbage", b'{"summary": ', b"[]", b'{"images": []}', b"\xff\xfe"]
)
def test_garbage_is_an_error_not_a_state(garbage: bytes) -> None:
    with pytest.raises(RbdParseError):
        parse_pool_status(garbage)


def test_split_description() -> None:
    assert split_description("local image is primary") == ("local image is primary", None)
    assert split_description("split-brain") == ("split-brain", None)
    assert split_description('replaying, {"replay_state":"syncing"}') == (
        "replaying",
        {"replay_state": "syncing"},
    )
    assert split_description("bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%") == (
        "bootstrapping, IMAGE_SYNC/COPY_IMAGE 50%",
        None,
    )
    assert split_description("replaying, {broken") == ("replaying, {broken", None)


def test_pool_info_and_schedule_status() -> None:
    info = parse_pool_info((DATA / "healthy" / "site-a-mirror-pool-info.json").read_text())
    assert (info.mode, info.site_name) == ("image", "site-a")
    assert [p["site_name"] for p in info.peers] == ["site-b"]
    sched = parse_schedule_status(
        (DATA / "healthy" / "site-a-mirror-snapshot-schedule-status.json").read_text()
    )
    assert [(s.image, s.schedule_time) for s in sched] == [
        ("replicapool/csi-vol-0001", datetime.fromisoformat("2026-11-26T09:49:00+00:00"))
    ]


def test_multi_image_lists_only_mirrored_images() -> None:
    status, _ = status_of("multi-image", "site-a")
    assert [i.name for i in status.images] == [
        "csi-vol-0001",
        "csi-vol-0002",
        "csi-vol-0003",
        "csi-vol-0004",
    ]


RELEASES = ["reef-18.2.7", "tentacle-20.2.4"]


@pytest.mark.parametrize("release", RELEASES)
def test_newer_releases_parse_to_the_same_facts(release: str) -> None:
    """tests/data/rbd/versions/: what Reef and Tentacle write differently (read in their
    source): sync progress in the description, and Tentacle's `mirror_uuid` key."""
    b = parse_pool_status(
        (DATA / "versions" / release / "site-b-mirror-pool-status-verbose.json").read_text()
    )
    a = parse_pool_status(
        (DATA / "versions" / release / "site-a-mirror-pool-status-verbose.json").read_text()
    )
    pacific, now = status_of("healthy", "site-b")
    image, old = b.images[0], pacific.images[0]
    assert (image.primary, a.images[0].primary) == (False, True)
    assert image.peers[0].mirror_uuids == old.peers[0].mirror_uuids != ""
    info = image.replay_info()
    assert info is not None and info["replay_state"] == "syncing"
    assert info["syncing_percent"] == 42 and info["seconds_until_synced"] == 7
    # The last synced snapshot is still local_snapshot_timestamp, not the one being synced.
    assert lag_seconds(image, now) == lag_seconds(old, now)
    assert classify(image, now, STALE) == classify(old, now, STALE) == "healthy"
    assert image.extra == {} and image.peers[0].status.known


@pytest.mark.parametrize("lead", ["orphan (force promoting)", "force promoted"])
def test_a_forced_promotion_reads_as_primary(lead: str) -> None:
    doc = json.loads((DATA / "healthy" / "site-b-mirror-pool-status-verbose.json").read_text())
    doc["images"][0].update(state="up+stopped", description=lead)
    assert parse_pool_status(json.dumps(doc)).images[0].primary is True


def _capture_with(image_name: str, peer_description_json: str | None = None) -> str:
    """The healthy capture of site-b, its first image renamed (as rbd would print it), and its
    peer's embedded replay JSON replaced when given."""
    doc = json.loads((DATA / "healthy" / "site-b-mirror-pool-status-verbose.json").read_text())
    first = doc["images"][0]
    first["name"] = image_name
    if peer_description_json is not None:
        peer = first["peer_sites"][0]
        if "{" in first["description"]:
            first["description"] = f"replaying, {peer_description_json}"
        else:
            peer["description"] = f"replaying, {peer_description_json}"
    return json.dumps(doc)  # ensure_ascii: any NUL, surrogate or accent as a \u escape


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("csi-vol-\x00nul", "csi-vol-\ufffdnul"),
        ("csi-vol-\ud800lone", "csi-vol-\ufffdlone"),
        ("csi-vol-caf\u00e9", "csi-vol-caf\u00e9"),  # a real accent is kept
    ],
)
def test_what_no_database_can_store_is_replaced_in_the_document_and_its_embedded_json(
    name: str, stored: str
) -> None:
    # Most documents are plain ASCII and skip the walk over their strings: these must not.
    escaped = json.dumps({"replay_state": name, "bytes_per_second": 1.0})
    status = parse_pool_status(_capture_with(name, escaped).encode())
    first = status.images[0]
    assert first.name == stored
    info = first.replay_info()
    assert info is not None and info["replay_state"] == stored
    # The same bytes as raw UTF-8 (no \u escape) where UTF-8 can carry them: the accent.
    if name.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raw = _capture_with(name).replace(json.dumps(name)[1:-1], name).encode()
        assert parse_pool_status(raw).images[0].name == stored


def test_a_state_or_lead_thousands_of_images_repeat_is_held_once() -> None:
    # A 10,000-image pool's status waits in the ingest queue, two sites at once; a copy of
    # "up+replaying" per image was a third of what it held (bench/rbd_parse.py).
    doc = json.loads((DATA / "healthy" / "site-b-mirror-pool-status-verbose.json").read_text())
    doc["images"] = [dict(doc["images"][0], name=f"csi-vol-{i}") for i in range(3)]
    a, b, _ = parse_pool_status(json.dumps(doc)).images
    assert a.local.raw == b.local.raw and a.local.raw is b.local.raw
    assert a.local.lead is b.local.lead and a.local.state is b.local.state
    assert a.peers[0].site_name is b.peers[0].site_name
    replay_a, replay_b = a.replay_info(), b.replay_info()
    assert replay_a is not None and replay_b is not None
    assert [k for k in replay_a] == [k for k in replay_b]
    assert all(x is y for x, y in zip(replay_a, replay_b, strict=True))
    assert a.name != b.name  # what differs per image stays its own
