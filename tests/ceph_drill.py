"""A DR drill on real Ceph: Ramen-style switches on the two-site lab (scripts/ceph-lab.sh), the
Kubernetes side on fake API servers, watched by real `auditd run` processes (one per probe
interval) that post to a fake Slack. Used by tests/test_drill_on_ceph.py and bench/failover_drill.py.

One switch, as Ramen does it: (optionally a DRPC enters Relocating/FailingOver), the old
primary's VR asks for secondary, `rbd mirror image demote` there, `promote` on the new side
(retried while it answers rc 30), and 10-25 s later the PVC/PV/VR move: deleted on the old
side, created (PVC Bound) on the new one. Then the drill waits for Ceph to settle.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session

from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sim.fakeslack import FakeSlack
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PV, PVC, VR, VRC
from auditd.store.models import EpisodeRow, ViolationRow

ROOT = Path(__file__).resolve().parent.parent
LAB_SCRIPT = ROOT / "scripts" / "ceph-lab.sh"
DRPC_CRD = ROOT / "tests" / "data" / "crds" / "ramendr.openshift.io_drplacementcontrols.yaml"
TOKEN = "xoxb-drill-token-0042"
IMAGE, POOL, NS, CLAIM = "csi-vol-0001", "replicapool", "app", "data"
SITE = {"dr1": "site-a", "dr2": "site-b"}


class Lab:
    """Admin access to the lab, as an operator (or Ramen's VR controller) would act."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = {**os.environ, "AUDITD_CEPH_LAB": str(base)}

    def rbd(self, cluster: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LAB_SCRIPT), "rbd", SITE[cluster], *args],
            capture_output=True, text=True, timeout=180, check=check, env=self.env,
        )  # fmt: skip

    def status(self, cluster: str, image: str = IMAGE) -> dict[str, Any]:
        r = self.rbd(
            cluster, "mirror", "image", "status", f"{POOL}/{image}", "--format", "json", check=False
        )
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def promote(self, cluster: str, force: bool = False) -> None:
        deadline = time.monotonic() + 180
        while True:
            args = [
                "mirror",
                "image",
                "promote",
                *(["--force"] if force else []),
                f"{POOL}/{IMAGE}",
            ]
            if self.rbd(cluster, *args, check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"promote on {cluster} never succeeded")
            time.sleep(2)  # rc 30 until the demotion snapshot has synced

    def wait_steady(self, primary: str, timeout: float = 240) -> None:
        other = "dr2" if primary == "dr1" else "dr1"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p, s = self.status(primary), self.status(other)
            if p.get("state") == "up+stopped" and s.get("state") == "up+replaying":
                return
            time.sleep(2)
        raise TimeoutError(f"{primary} primary / {other} replaying not reached")

    def auditd_ceph(self, cluster: str) -> dict[str, str]:
        site = self.base / SITE[cluster]
        return {
            "conf": str(site / "auditd.conf"),
            "user": "auditd",
            "keyring": str(site / "auditd.keyring"),
        }


@dataclass
class Watcher:
    """One `auditd run` with its own database and probe interval."""

    name: str
    interval: int
    db: Path
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9

    def session(self) -> Session:
        return Session(create_engine(f"sqlite:///{self.db}"))

    def ready(self) -> bool:
        if not self.db.exists():
            return False
        with self.session() as s:
            return inspect(s.get_bind()).has_table("rbd_image_records")


@dataclass
class SwitchRecord:
    old: str
    new: str
    drpc: str | None
    started: float  # time.monotonic() of the first action (VR to secondary)
    promoted: float = 0.0
    moved: float = 0.0
    settled: float = 0.0


@dataclass
class Drill:
    lab: Lab
    workdir: Path
    intervals: tuple[int, ...] = (60, 10)
    extra: dict[str, dict[str, object]] = field(default_factory=dict)
    seed: int = 0
    # Per cluster: Ceph access other than the lab's client.auditd (a key with fewer caps).
    ceph_override: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.kube = {c: FakeKubeAPI(c, bookmark_interval=5).start() for c in ("dr1", "dr2")}
        self.drpc = self.kube["dr1"].install_crd(yaml.safe_load(DRPC_CRD.read_text()))
        self.slack = FakeSlack(token=TOKEN).start()
        self.kubeconfig = self.workdir / "kubeconfig"
        write_kubeconfig(str(self.kubeconfig), {c: k.url for c, k in self.kube.items()})
        self.watchers: list[Watcher] = []
        self.switches: list[SwitchRecord] = []
        self.primary = "dr1"

    # --------------------------------------------------------------- daemons
    def start(self) -> None:
        for k in self.kube.values():  # 1m, as the lab's snapshot schedule: the RPO rule's base
            k.create(VRC, objects.vrc())
        self._volume(self.primary, create=True)
        for interval in self.intervals:
            w = Watcher(f"probe-{interval}s", interval, self.workdir / f"probe-{interval}s.db")
            cfg = self.workdir / f"{w.name}.toml"
            cfg.write_text(
                pair_config_toml(
                    self.kubeconfig,
                    f"sqlite:///{w.db}",
                    data_dir=self.workdir / w.name,
                    slack_base_url=self.slack.base_url,
                    pools=(POOL,),
                    ceph={
                        c: self.ceph_override.get(c) or self.lab.auditd_ceph(c)
                        for c in ("dr1", "dr2")
                    },
                    sections={"probe": {"interval": f"{interval}s"}, **self.extra},
                )
            )
            w.log = self.workdir / f"{w.name}.log"
            w.proc = subprocess.Popen(
                [sys.executable, "-m", "auditd", "run", "-c", str(cfg)],
                env={**os.environ, "AUDITD_SLACK_TOKEN": TOKEN},
                stdout=subprocess.DEVNULL,
                stderr=w.log.open("w"),
                text=True,
            )
            self.watchers.append(w)
        for w in self.watchers:  # migrations done: their tables can be read from now on
            deadline = time.monotonic() + 60
            while not w.ready():
                if time.monotonic() > deadline or (w.proc and w.proc.poll() is not None):
                    raise RuntimeError(f"{w.name} did not start: see {w.log}")
                time.sleep(0.5)

    def stop(self) -> None:
        for w in self.watchers:
            if w.proc is not None and w.proc.poll() is None:
                w.stop()
        for k in self.kube.values():
            k.stop()
        self.slack.stop()

    # ----------------------------------------------------------- kubernetes
    def _volume(self, cluster: str, create: bool) -> None:
        k = self.kube[cluster]
        pv = f"pv-{cluster}-{IMAGE}"
        if create:
            k.create(PV, objects.pv(pv, NS, CLAIM, IMAGE))
            k.create(PVC, objects.pvc(CLAIM, NS, volume=pv))
            k.create(VR, objects.vr(CLAIM, NS, CLAIM))
        else:
            k.delete(VR, NS, CLAIM)
            k.delete(PVC, NS, CLAIM)
            k.delete(PV, "", pv)

    def _drpc_phase(self, phase: str) -> None:
        k = self.kube["dr1"]  # the hub's DRPC, watched like any object
        if k.get(self.drpc, NS, "app-drpc") is None:
            k.create(
                self.drpc,
                {
                    "apiVersion": "ramendr.openshift.io/v1alpha1",
                    "kind": "DRPlacementControl",
                    "metadata": {"name": "app-drpc", "namespace": NS},
                    "spec": {"drPolicyRef": {"name": "dr-policy"}, "placementRef": {"name": "app"}},
                },
            )
        k.patch(self.drpc, NS, "app-drpc", {"status": {"phase": phase}})

    # ---------------------------------------------------------------- a switch
    def switch(self, drpc: bool = False) -> SwitchRecord:
        old = self.primary
        new = "dr2" if old == "dr1" else "dr1"
        rec = SwitchRecord(old, new, None, time.monotonic())
        if drpc:
            rec.drpc = "Relocating" if self.rng.random() < 0.5 else "FailingOver"
            self._drpc_phase(rec.drpc)
        self.kube[old].patch(VR, NS, CLAIM, {"spec": {"replicationState": "secondary"}})
        self.lab.rbd(old, "mirror", "image", "demote", f"{POOL}/{IMAGE}")
        self.lab.promote(new)
        rec.promoted = time.monotonic()
        time.sleep(self.rng.uniform(10, 25))
        self._volume(old, create=False)
        self._volume(new, create=True)
        rec.moved = time.monotonic()
        self.lab.wait_steady(new)
        if drpc:
            self._drpc_phase("Relocated" if rec.drpc == "Relocating" else "FailedOver")
        rec.settled = time.monotonic()
        self.primary = new
        self.switches.append(rec)
        return rec

    # ----------------------------------------------------------------- results
    def slack_messages(self) -> list[dict[str, Any]]:
        return list(self.slack.messages)

    def fired(self, w: Watcher) -> list[tuple[str, str, str]]:
        with w.session() as s:
            return [
                (v.rule, v.subject, v.severity)
                for v in s.scalars(select(ViolationRow).where(ViolationRow.fired_at.is_not(None)))
            ]

    def episodes(self, w: Watcher) -> list[EpisodeRow]:
        with w.session() as s:
            return list(s.scalars(select(EpisodeRow).order_by(EpisodeRow.id)))
