"""/metrics stays affordable at scale: per-pool counts of images by class, and per-image series
only for the images that are not healthy (unknown included: unknown is never healthy)."""

from __future__ import annotations

from datetime import UTC, datetime

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
