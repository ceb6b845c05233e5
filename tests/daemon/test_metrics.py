"""/metrics stays affordable at scale: per-pool counts of images by class, and per-image series
only for the images that are not healthy (unknown included: unknown is never healthy)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from captured_pair import probe
from pipeline import Pipeline, steady
from prometheus_client import generate_latest

from auditd.daemon.metrics import CLASSES, Metrics
from auditd.inventory.inventory import EXISTS, ObjectKey, Transition
from auditd.inventory.rbd_facts import RBD_IMAGE

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def image(n: int) -> tuple[str, str, str]:
    return ("dr2", "replicapool", f"csi-vol-{n:04d}")


def moved(n: int, field: str, old: str | None, new: str | None) -> Transition:
    key = ObjectKey("dr2", RBD_IMAGE, "replicapool", image(n)[2])
    return Transition(key, field, old, new, AT, "probe", False, None)


def counts(m: Metrics) -> dict[str, float]:
    got = {
        s.labels["state"]: s.value
        for family in m.images.collect()
        for s in family.samples
        if s.labels["pool"] == "replicapool"
    }
    assert set(got) == set(CLASSES)
    return got


def per_image(m: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["image"], s.labels["state"]): s.value
        for family in m.image_state.collect()
        for s in family.samples
    }


def test_healthy_images_are_counted_per_pool_without_a_series_each() -> None:
    m = Metrics()
    m.image_states((image(n), "healthy") for n in range(1000))
    assert counts(m) == {"healthy": 1000, "degraded": 0, "error": 0, "stale": 0, "unknown": 0}
    assert per_image(m) == {}
    # Five pool series and no image series: the exposition does not grow with healthy images.
    text = generate_latest(m.registry).decode()
    assert text.count("auditd_rbd_images{") == 5 and "auditd_rbd_image_state{" not in text


def test_an_image_leaving_healthy_gets_its_series_and_loses_it_on_return_or_removal() -> None:
    m = Metrics()
    m.image_states([(image(1), "healthy"), (image(2), "healthy")])
    m.observe([], [moved(1, "class", "healthy", "stale")], [], [], {})
    assert per_image(m) == {("csi-vol-0001", "stale"): 1}
    assert counts(m)["stale"] == 1 and counts(m)["healthy"] == 1
    # Stale to unknown (the pool's probe failing): one series, the new class.
    m.observe([], [moved(1, "class", "stale", "unknown")], [], [], {})
    assert per_image(m) == {("csi-vol-0001", "unknown"): 1}
    m.observe([], [moved(1, "class", "unknown", "healthy")], [], [], {})
    assert per_image(m) == {} and counts(m)["healthy"] == 2
    m.observe([], [moved(2, "class", "healthy", "error")], [], [], {})
    m.observe([], [moved(2, EXISTS, "true", "false")], [], [], {})  # the image is gone
    assert per_image(m) == {}
    assert counts(m) == {"healthy": 1, "degraded": 0, "error": 0, "stale": 0, "unknown": 0}


def test_a_class_seen_again_is_not_counted_twice() -> None:
    m = Metrics()
    m.image_states([(image(1), "degraded")])
    m.image_states([(image(1), "degraded")])
    assert counts(m)["degraded"] == 1 and per_image(m) == {("csi-vol-0001", "degraded"): 1}


def test_memory_reloaded_from_the_history_moves_the_image_gauges_with_it(tmp_path: Path) -> None:
    """A standby's gauges are as of its start, and a failed commit's batch never happened: when
    the writer's memory is reloaded from the history (a takeover, a rollback), the gauges are
    what it now holds, not what this process last wrote."""
    m = Metrics()
    standby = Pipeline(tmp_path, metrics=m)
    steady(standby)
    dr2 = [
        i for i in standby.ingest.inventory.objects if i.kind == RBD_IMAGE and i.cluster == "dr2"
    ]
    assert dr2 and all(m.classes[(k.cluster, k.namespace, k.name)] == "healthy" for k in dr2)
    # Another replica, writing the same history meanwhile, saw dr2's mirror daemon go down.
    leader = Pipeline(tmp_path)
    steady(leader)
    leader.at(2, probe("dr2", "mirror-daemon-down-t65s"))
    held = {
        (k.cluster, k.namespace, k.name): known.facts.get("class") or "unknown"
        for k, known in leader.ingest.inventory.objects.items()
        if k.kind == RBD_IMAGE
    }
    assert {held[(k.cluster, k.namespace, k.name)] for k in dr2} != {"healthy"}
    standby.ingest._restore(standby.ingest.inventory.checkpoint())  # as at a takeover
    assert m.classes == held
    assert per_image(m) == {(img, c): 1 for (_, _, img), c in held.items() if c != "healthy"}
