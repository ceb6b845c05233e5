"""The `exec` transport: rbd in the Rook toolbox pod, through the real client's websocket exec
against the fake API server (real handshake, v4.channel.k8s.io framing, exit status)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config
from rbd_site import Site

from auditd.sim.fakekube import POD, FakeKubeAPI
from auditd.sources.rbd.probe import PoolProber
from auditd.sources.rbd.transport import ExecTransport


def toolbox(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "rook-ceph", "labels": {"app": "rook-ceph-tools"}},
        "spec": {"containers": [{"name": "rook-ceph-tools"}]},
        "status": {"phase": "Running"},
    }


@pytest.fixture
def setup(clusters: dict[str, Any], tmp_path: Path):  # type: ignore[no-untyped-def]
    fake: FakeKubeAPI = clusters["dr1"]
    fake.add_resource(POD)
    fake.create(POD, toolbox("rook-ceph-tools-7d9f-abcde"))
    site = Site(tmp_path, "site-a")
    seen: list[tuple[str, list[str]]] = []

    def run_in_toolbox(
        ns: str, pod: str, container: str | None, command: list[str]
    ) -> tuple[int, bytes, bytes]:
        seen.append((pod, command))
        assert command[0] == "rbd"
        if (site.dir / "scenario").read_text() == "slow":
            time.sleep(3)
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "auditd.sim.fakerbd",
                "--conf",
                str(site.dir / "ceph.conf"),
                *command[1:],
            ],
            capture_output=True,
            timeout=30,
        )
        return p.returncode, p.stdout, p.stderr

    fake.exec_handler = run_in_toolbox
    api = config.new_client_from_config(config_file=str(clusters["kubeconfig"]), context="dr1")
    transport = ExecTransport(lambda: api, "rook-ceph", "app=rook-ceph-tools")
    return fake, site, seen, transport


def test_probe_through_the_toolbox(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, seen, transport = setup
    r = PoolProber("dr1", "replicapool", transport, 10, lambda _: None).probe_status()
    assert (
        r.failure is None and r.status is not None and r.status.images[0].local.raw == "up+stopped"
    )
    assert seen == [
        (
            "rook-ceph-tools-7d9f-abcde",
            ["rbd", "mirror", "pool", "status", "replicapool", "--verbose", "--format", "json"],
        )
    ]


def test_exit_status_and_stderr_come_through(setup) -> None:  # type: ignore[no-untyped-def]
    _, site, _, transport = setup
    site.scenario("no-pool")
    r = PoolProber("dr1", "replicapool", transport, 10, lambda _: None).probe_status()
    assert (
        r.failure is not None and r.failure.kind == "no-such-pool" and "rc 2" in r.failure.message
    )


def test_a_toolbox_pod_that_is_gone_is_a_failure_then_found_again(setup) -> None:  # type: ignore[no-untyped-def]
    fake, _, seen, transport = setup
    prober = PoolProber("dr1", "replicapool", transport, 10, lambda _: None)
    assert prober.probe_status().failure is None
    fake.delete(POD, "rook-ceph", "rook-ceph-tools-7d9f-abcde")  # rescheduled
    fake.create(POD, toolbox("rook-ceph-tools-7d9f-fghij"))
    r = prober.probe_status()
    assert r.failure is not None and r.failure.kind == "exec"
    assert prober.probe_status().failure is None
    assert seen[-1][0] == "rook-ceph-tools-7d9f-fghij"


def test_no_toolbox_at_all(setup) -> None:  # type: ignore[no-untyped-def]
    fake, _, _, transport = setup
    fake.delete(POD, "rook-ceph", "rook-ceph-tools-7d9f-abcde")
    r = PoolProber("dr1", "replicapool", transport, 10, lambda _: None).probe_status()
    assert (
        r.failure is not None
        and r.failure.kind == "exec"
        and "no running toolbox pod" in r.failure.message
    )


def test_timeout(setup) -> None:  # type: ignore[no-untyped-def]
    _, site, _, transport = setup
    site.scenario("slow")
    r = PoolProber("dr1", "replicapool", transport, 1, lambda _: None).probe_status()
    assert r.failure is not None and r.failure.kind == "timeout"
