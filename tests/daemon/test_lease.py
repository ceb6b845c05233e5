"""Kubernetes Leases (daemon/lease.py) through the real client's LeaseLock, against the fake
API server's create/replace with the real server's 409s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from auditd.clock import SYSTEM
from auditd.config import ConfigError
from auditd.daemon import runner
from auditd.daemon.lease import Leases, lease_name
from auditd.daemon.runner import leases_for
from auditd.sim.fakekube import LEASE, FakeKubeAPI, write_kubeconfig
from auditd.sources.kube.client import api_client


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, Path]]:
    fake = FakeKubeAPI("home", resources=[LEASE]).start()
    kubeconfig = tmp_path / "home-kubeconfig"
    write_kubeconfig(str(kubeconfig), {"home": fake.url})
    yield fake, kubeconfig
    fake.stop()


def _leases(kubeconfig: Path, who: str, ticks: Ticks) -> Leases:
    return Leases(
        api_client(kubeconfig, "home"), "auditd", who, timedelta(seconds=15), monotonic=ticks
    )


def test_one_holder_per_lease_until_it_expires_or_is_released(
    site: tuple[FakeKubeAPI, Path],
) -> None:
    fake, kubeconfig = site
    ticks = Ticks()
    a, b = _leases(kubeconfig, "a", ticks), _leases(kubeconfig, "b", ticks)
    assert a.acquire_or_renew("pair/p1") is True  # created
    lease = fake.get(LEASE, "auditd", "auditd-pair-p1")
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert b.acquire_or_renew("pair/p1") is False
    assert b.holders["pair/p1"] == "a"
    ticks.now += 10
    assert a.acquire_or_renew("pair/p1") is True  # renewed
    ticks.now += 1
    assert b.acquire_or_renew("pair/p1") is False  # b sees the renewal now: t=1011
    ticks.now += 14
    assert b.acquire_or_renew("pair/p1") is False  # unchanged for 14 s on b's clock
    ticks.now += 2  # 16 s: expired, whatever the clocks of a's machine and the server say
    assert b.acquire_or_renew("pair/p1") is True
    assert fake.get(LEASE, "auditd", "auditd-pair-p1")["spec"]["holderIdentity"] == "b"
    assert a.acquire_or_renew("pair/p1") is False  # a learns it lost it
    b.release("pair/p1")
    assert fake.get(LEASE, "auditd", "auditd-pair-p1")["spec"]["holderIdentity"] in ("", None)
    assert a.acquire_or_renew("pair/p1") is True  # released: free at once


def test_a_racing_write_loses_on_the_resource_version(site: tuple[FakeKubeAPI, Path]) -> None:
    fake, kubeconfig = site
    ticks = Ticks()
    a, b = _leases(kubeconfig, "a", ticks), _leases(kubeconfig, "b", ticks)
    assert a.acquire_or_renew("auditd") is True
    a.release("auditd")
    # Both read the released Lease; the first write wins, the second gets 409 Conflict.
    for lock in (a._lock("auditd"), b._lock("auditd")):
        assert lock.get(lease_name("auditd"), "auditd")[0]
    assert a._lock("auditd").update(lease_name("auditd"), "auditd", a._record())
    assert not b._lock("auditd").update(lease_name("auditd"), "auditd", b._record())
    assert fake.get(LEASE, "auditd", "auditd-auditd")["spec"]["holderIdentity"] == "a"


def test_a_failed_write_is_lost_only_to_another_holder(site: tuple[FakeKubeAPI, Path]) -> None:
    """LeaseLock hides why a write failed: a 500 must not read as "another replica holds it"
    (the leader would give its pair up on a hiccup of the API server)."""
    fake, kubeconfig = site
    ticks = Ticks()
    a, b = _leases(kubeconfig, "a", ticks), _leases(kubeconfig, "b", ticks)
    fake.fail_next_write(1, 500, "leases")
    assert a.acquire_or_renew("pair/p1") is None  # the create failed: unknown
    assert a.acquire_or_renew("pair/p1") is True
    fake.fail_next_write(1, 500, "leases")
    assert a.acquire_or_renew("pair/p1") is None  # the renewal failed: still a's, unknown
    assert b.acquire_or_renew("pair/p1") is False
    ticks.now += 20
    assert b.acquire_or_renew("pair/p1") is True  # a silent for 20 s on b's clock
    fake.fail_next_write(1, 409, "leases")
    assert a.acquire_or_renew("pair/p1") is False  # and now a learns it is b's


def test_an_unreachable_api_server_is_unknown_not_lost(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(str(kubeconfig), {"home": "http://127.0.0.1:9"})
    leases = _leases(kubeconfig, "a", Ticks())
    assert leases.acquire_or_renew("pair/p1") is None
    leases.release("pair/p1")  # best effort, no exception


def test_lease_names_are_dns_names() -> None:
    assert lease_name("pair/dr1-dr2") == "auditd-pair-dr1-dr2"
    assert lease_name("cluster/a_b") == "auditd-cluster-a-b"
    assert lease_name("auditd") == "auditd-auditd"


def test_which_election_a_config_gets(
    site: tuple[FakeKubeAPI, Path],
    make_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, kubeconfig = site
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(runner, "SERVICE_ACCOUNT_NAMESPACE", Path("/nonexistent"))
    assert leases_for(make_config(), SYSTEM) is None  # auto, not in a pod
    assert leases_for(make_config(ha={"election": "postgres"}), SYSTEM) is None
    # In a pod without a token or a namespace: the advisory locks alone, said once.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert leases_for(make_config(), SYSTEM) is None
    assert "by PostgreSQL alone" in caplog.text
    # Asked for explicitly, a missing piece is a config error.
    with pytest.raises(ConfigError, match="lease_namespace"):
        leases_for(make_config(ha={"election": "lease"}), SYSTEM)
    explicit = {"election": "lease", "kubeconfig": str(kubeconfig), "context": "home"}
    monkeypatch.setenv("POD_NAMESPACE", "auditd")
    leases = leases_for(make_config(ha=explicit), SYSTEM)
    assert leases is not None and leases.namespace == "auditd"
    with pytest.raises(ConfigError, match=r"ha\.kubeconfig"):
        leases_for(make_config(ha={**explicit, "kubeconfig": "/nonexistent"}), SYSTEM)
