"""The synthetic pool a long run probes (auditd/sim/rbdpool.py, fakerbd's `synthetic`): the real
capture's image, N times, with rbd-mirror's rewrite and snapshot rhythm."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from auditd.sim.rbdpool import REWRITE, image_name, pool_status
from auditd.sources.rbd.parse import classify, lag_seconds, parse_pool_status
from auditd.sources.rbd.probe import PoolProber, ProbeResult
from auditd.sources.rbd.transport import DirectTransport

AT = datetime(2026, 12, 5, 3, 0, 17, tzinfo=UTC)


def test_every_image_is_healthy_on_both_sites_with_a_lag_under_a_minute() -> None:
    for cluster, primary in (("dr1", True), ("dr2", False)):
        status = parse_pool_status(pool_status(cluster, 300, AT).encode())
        assert [i.name for i in status.images[:2]] == ["csi-vol-00000", "csi-vol-00001"]
        assert len({i.global_id for i in status.images}) == 300
        for image in status.images:
            assert image.primary is primary
            assert classify(image, AT, timedelta(minutes=3)) == "healthy"
            if not primary:
                lag = lag_seconds(image, AT)
                assert lag is not None and 0 <= lag < 60


def test_records_are_rewritten_every_30_s_each_at_its_own_offset() -> None:
    before = parse_pool_status(pool_status("dr2", 60, AT).encode()).images
    later = AT + timedelta(seconds=10)
    after = parse_pool_status(pool_status("dr2", 60, later).encode()).images
    ages = [AT - i.local.last_update for i in before if i.local.last_update]
    assert len(ages) == 60 and all(timedelta(0) <= a < timedelta(seconds=REWRITE) for a in ages)
    moved = sum(
        1 for a, b in zip(before, after, strict=True) if a.local.last_update != b.local.last_update
    )
    assert moved == 60 * 10 // REWRITE  # a third of the records rewritten in 10 s


def test_fakerbd_prints_it_for_the_real_direct_transport(tmp_path: Path) -> None:
    site = tmp_path / "site-b"
    site.mkdir()
    (site / "ceph.conf").write_text("[global]\n")
    for name, value in (
        ("site", "site-b"),
        ("cluster", "dr2"),
        ("scenario", "synthetic"),
        ("images", "25"),
    ):
        (site / name).write_text(value)
    transport = DirectTransport(
        site / "ceph.conf", "auditd", command=[sys.executable, "-m", "auditd.sim.fakerbd"]
    )
    results: list[ProbeResult] = []
    PoolProber("dr2", "replicapool", transport, 30, results.append).probe_status()
    assert results[0].failure is None and results[0].status is not None
    assert len(results[0].status.images) == 25
    # A pool whose volumes come and go (the soak's churn): the images from LO to HI - 1.
    (site / "images").write_text("40 43")
    PoolProber("dr2", "replicapool", transport, 30, results.append).probe_status()
    assert results[1].status is not None
    assert [i.name for i in results[1].status.images] == [image_name(i) for i in (40, 41, 42)]
