"""A stand-in Ceph site for the real `direct` transport: `auditd.sim.fakerbd` replays the real
captures of the scenario its ceph.conf directory names."""

from __future__ import annotations

import sys
from pathlib import Path

from auditd.sources.rbd.probe import PoolProber, ProbeResult
from auditd.sources.rbd.transport import DirectTransport

DATA = Path(__file__).parent / "data" / "rbd"
FAKE_RBD = [sys.executable, "-m", "auditd.sim.fakerbd"]


class Site:
    """A stand-in Ceph site: its ceph.conf directory holds the scenario to replay."""

    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / name
        self.dir.mkdir()
        (self.dir / "ceph.conf").write_text("[global]\n")
        (self.dir / "site").write_text(name)
        (self.dir / "fixtures").write_text(str(DATA))
        self.scenario("healthy")
        self.transport = DirectTransport(self.dir / "ceph.conf", "auditd", command=FAKE_RBD)

    def scenario(self, name: str) -> None:
        (self.dir / "scenario").write_text(name)

    def prober(self, results: list[ProbeResult], timeout: float = 10) -> PoolProber:
        return PoolProber(self.dir.name, "replicapool", self.transport, timeout, results.append)
