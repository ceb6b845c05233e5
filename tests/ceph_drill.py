"""A DR drill on real Ceph: Ramen-style switches on the two-site lab (scripts/ceph-lab.sh), the
Kubernetes side on fake API servers, watched by real `auditd run` processes (one per probe
interval) that post to a fake Slack. Used by tests/system/test_drill_on_ceph.py and bench/failover_drill.py.

One switch, as Ramen does it: (optionally a DRPC enters Relocating/FailingOver), the old
primary's VR asks for secondary, `rbd mirror image demote` there, `promote` on the new side
(retried while it answers rc 30), and 10-25 s later the PVC/PV/VR move: deleted on the old
side, created (PVC Bound) on the new one. Then the drill waits for Ceph to settle. With many
images (an application's PVCs) every step is done for all of them, together or staggered.

A site loss: the site's monitor, manager and rbd-mirror are frozen (`ceph-lab.sh freeze`) and
its API server stopped (open connections reset); the survivor is force-promoted and its PVC/PV/VR created; later the site
returns as it was (SIGCONT, the API server back on its port with its old objects) and is
recovered as Ramen does: VR secondary, demote, resync, old objects deleted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
VGR_CRD = (
    ROOT
    / "tests"
    / "data"
    / "crds"
    / "replication.storage.openshift.io_volumegroupreplications.yaml"
)
GROUP = "app-group"
TOKEN = "xoxb-drill-token-0042"
IMAGE, POOL, NS, CLAIM = "csi-vol-0001", "replicapool", "app", "data"
SITE = {"dr1": "site-a", "dr2": "site-b"}


def wait_for(pred: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
    """Poll ``pred`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def claim_of(image: str) -> str:
    """The PVC name of an image: the lab's first image keeps the drill's historic name."""
    return CLAIM if image == IMAGE else f"data-{image.rsplit('-', 1)[-1]}"


def app_images(n: int) -> tuple[str, ...]:
    """An application's n volumes: the lab's image and n - 1 more (csi-vol-0101, ...)."""
    return (IMAGE, *(f"csi-vol-{100 + i:04d}" for i in range(1, n)))


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

    def promote(self, cluster: str, force: bool = False, image: str = IMAGE) -> None:
        deadline = time.monotonic() + 180
        while True:
            args = [
                "mirror",
                "image",
                "promote",
                *(["--force"] if force else []),
                f"{POOL}/{image}",
            ]
            r = self.rbd(cluster, *args, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"promote on {cluster} never succeeded: rc {r.returncode}, {r.stderr.strip()}"
                )
            time.sleep(2)  # rc 30 until the demotion snapshot has synced

    def wait_steady(
        self, primary: str, timeout: float = 240, images: tuple[str, ...] = (IMAGE,)
    ) -> None:
        other = "dr2" if primary == "dr1" else "dr1"
        deadline = time.monotonic() + timeout
        waiting = list(images)
        while time.monotonic() < deadline:
            waiting = [i for i in waiting if not self._steady(primary, other, i)]
            if not waiting:
                return
            time.sleep(2)
        raise TimeoutError(f"{primary} primary / {other} replaying not reached for {waiting}")

    def _steady(self, primary: str, other: str, image: str) -> bool:
        p, s = self.status(primary, image), self.status(other, image)
        return p.get("state") == "up+stopped" and s.get("state") == "up+replaying"

    def wait_replay_idle(self, cluster: str, image: str = IMAGE, timeout: float = 120) -> bool:
        """The replica has no snapshot sync in flight. A forced promotion during one waited
        about 150 s in CI (the test before had just demoted and promoted the primary)."""
        return wait_for(
            lambda: '"replay_state":"idle"' in self.status(cluster, image).get("description", ""),
            timeout,
            every=2,
        )

    def is_primary(self, cluster: str, image: str = IMAGE) -> bool:
        r = self.rbd(cluster, "info", f"{POOL}/{image}", "--format", "json", check=False)
        return (
            r.returncode == 0 and json.loads(r.stdout).get("mirroring", {}).get("primary") is True
        )

    def pool_summary(self, cluster: str) -> dict[str, Any]:
        """The pool status summary (health, daemon_health, image_health), {} if unreadable."""
        r = self.rbd(cluster, "mirror", "pool", "status", POOL, "--format", "json", check=False)
        return json.loads(r.stdout).get("summary", {}) if r.returncode == 0 else {}

    def daemon_health(self, cluster: str) -> str | None:
        """The pool summary's daemon_health: the manager's view of the site's rbd-mirror."""
        return self.pool_summary(cluster).get("daemon_health")

    def wait_pools_ok(self, timeout: float = 180, restart_after: float = 30) -> None:
        """Both sites' pool summaries OK: health and daemon_health. Image states alone do not
        say it: after a site's return its images are `up+stopped` while its manager still
        answers daemon_health UNKNOWN, which `auditd check` and the pool rule rightly count
        against the pair. After a 150 s freeze that lasted ~10 s here; after the lost-site
        drill, CI saw it last over four minutes (why is not established: the thawed daemons
        resume old sessions, where a site back from a real loss would start them afresh). So
        a site whose daemon is still not OK after ``restart_after`` gets its rbd-mirror
        restarted, as a returning site's would be."""

        def ok() -> bool:
            summaries = [self.pool_summary(c) for c in SITE]
            return all(s.get("health") == s.get("daemon_health") == "OK" for s in summaries)

        if wait_for(ok, restart_after, every=3):
            return
        for cluster, site in SITE.items():
            if self.daemon_health(cluster) != "OK":
                for step in ("stop-mirror", "start-mirror"):
                    subprocess.run(
                        [str(LAB_SCRIPT), step, site],
                        check=True, capture_output=True, timeout=150, env=self.env,
                    )  # fmt: skip
        if wait_for(ok, timeout, every=3):
            return
        raise TimeoutError(f"rbd mirror pool status: { {c: self.pool_summary(c) for c in SITE} }")

    def mirrored_images(self, cluster: str) -> dict[str, dict[str, Any]]:
        """Every image the site's pool status lists, by name (state, description)."""
        r = self.rbd(
            cluster, "mirror", "pool", "status", POOL, "--verbose", "--format", "json", check=False
        )
        if r.returncode != 0:
            return {}
        return {i["name"]: i for i in json.loads(r.stdout).get("images", [])}

    def restore(self, primary: str = "dr1") -> None:
        """Back to the steady pair, whatever a failed test left: both sites thawed, every
        mirrored image primary on ``primary`` and replaying on its peer, both pools OK. A
        no-op on a steady lab (a few status calls); without it one test's failure mid-switch
        fails every test after it on the shared lab, hiding which one broke."""
        other = "dr2" if primary == "dr1" else "dr1"
        for site in SITE.values():  # SIGCONT: harmless on a running daemon
            subprocess.run([str(LAB_SCRIPT), "thaw", site], timeout=30, env=self.env, check=False)
        mine, theirs = self.mirrored_images(primary), self.mirrored_images(other)
        images = sorted(set(mine) | set(theirs))
        for image in images:
            here, there = mine.get(image, {}), theirs.get(image, {})
            if here.get("state") == "up+stopped" and there.get("state") == "up+replaying":
                continue
            spec = f"{POOL}/{image}"
            if self.is_primary(other, image):  # the peer's data is dropped: a lab, not a workload
                self.rbd(other, "mirror", "image", "demote", spec, check=False)
                if self.is_primary(primary, image):  # split brain: the peer must resync
                    self.rbd(other, "mirror", "image", "resync", spec, check=False)
            if not self.is_primary(primary, image):  # a switch cut short, or the peer's
                self.promote(primary, image=image)
            elif there.get("state") == "up+error":
                self.rbd(other, "mirror", "image", "resync", spec, check=False)
        self.wait_steady(primary, timeout=420, images=tuple(images))
        self.wait_pools_ok()

    def ensure_images(self, images: tuple[str, ...], primary: str = "dr1") -> None:
        """The images exist, mirrored (snapshot mode) from ``primary`` and replaying on its
        peer: what an application's PVCs are after provisioning."""
        for image in images:
            if self.rbd(primary, "info", f"{POOL}/{image}", check=False).returncode != 0:
                self.rbd(primary, "create", "--size", "16M", f"{POOL}/{image}")
                self.rbd(primary, "mirror", "image", "enable", f"{POOL}/{image}", "snapshot")
        self.wait_steady(primary, timeout=300, images=images)

    def freeze(self, cluster: str, frozen: bool = True) -> None:
        """A lost site (its mon, mgr and rbd-mirror stopped), or its return."""
        subprocess.run(
            [str(LAB_SCRIPT), "freeze" if frozen else "thaw", SITE[cluster]],
            check=True, timeout=30, env=self.env,
        )  # fmt: skip

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
    images: tuple[str, ...] = (IMAGE,)  # the application's volumes, all switched together
    # The first ``grouped`` images replicate as one consistency group (a VolumeGroupReplication
    # listing their PVCs), the rest with a VolumeReplication each. Ceph Pacific has no group
    # mirroring (`rbd mirror group` came with Squid), so the lab mirrors the members image by
    # image; what the group rules weigh is each member's own record, as on any release.
    grouped: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.kube = {c: FakeKubeAPI(c, bookmark_interval=5).start() for c in ("dr1", "dr2")}
        self.drpc = self.kube["dr1"].install_crd(yaml.safe_load(DRPC_CRD.read_text()))
        self.vgr = (
            {c: k.install_crd(yaml.safe_load(VGR_CRD.read_text())) for c, k in self.kube.items()}
            if self.grouped
            else {}
        )
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
                    sections={
                        **self.extra,
                        # extra's probe keys beside this daemon's interval, not instead of it
                        "probe": {"interval": f"{interval}s", **self.extra.get("probe", {})},
                    },
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
    @property
    def group_images(self) -> tuple[str, ...]:
        return self.images[: self.grouped]

    def _volume(self, cluster: str, create: bool, images: tuple[str, ...] | None = None) -> None:
        k = self.kube[cluster]
        members = [claim_of(i) for i in images or self.images if i in self.group_images]
        if members and not create:
            k.delete(self.vgr[cluster], NS, GROUP)
        for image in images or self.images:
            pv, claim = f"pv-{cluster}-{image}", claim_of(image)
            grouped = image in self.group_images
            if create:
                k.create(PV, objects.pv(pv, NS, claim, image))
                k.create(PVC, objects.pvc(claim, NS, volume=pv))
                if not grouped:
                    k.create(VR, objects.vr(claim, NS, claim))
            else:
                if not grouped:
                    k.delete(VR, NS, claim)
                k.delete(PVC, NS, claim)
                k.delete(PV, "", pv)
        if members and create:
            k.create(self.vgr[cluster], objects.vgr(GROUP, NS, members))

    def _group_demoted(self, cluster: str) -> None:
        """What the group's controller reports once its images are demoted. Left Primary, the
        old group and the new one both said Primary for as long as the two clusters' watch
        events took to arrive in order (a 16 ms split brain in CI, 2026-12-06)."""
        if self.grouped:
            self.kube[cluster].patch(
                self.vgr[cluster], NS, GROUP, {"status": {"state": "Secondary"}}
            )

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
    def switch(self, drpc: bool = False, stagger: bool = False) -> SwitchRecord:
        """All the application's volumes: each step for all of them (Ramen's VRG reconciles
        its VRs together), or, ``stagger``, one volume's demote and promote after another."""
        old = self.primary
        new = "dr2" if old == "dr1" else "dr1"
        rec = SwitchRecord(old, new, None, time.monotonic())
        if drpc:
            rec.drpc = "Relocating" if self.rng.random() < 0.5 else "FailingOver"
            self._drpc_phase(rec.drpc)
        patch = {"spec": {"replicationState": "secondary"}}
        for image in self.images:
            if image not in self.group_images:
                self.kube[old].patch(VR, NS, claim_of(image), patch)
        if self.grouped:
            self.kube[old].patch(self.vgr[old], NS, GROUP, patch)
        if stagger:
            for image in self.images:
                self.lab.rbd(old, "mirror", "image", "demote", f"{POOL}/{image}")
                time.sleep(self.rng.uniform(0, 3))
                self.lab.promote(new, image=image)
        else:
            for image in self.images:
                self.lab.rbd(old, "mirror", "image", "demote", f"{POOL}/{image}")
            for image in self.images:
                self.lab.promote(new, image=image)
        self._group_demoted(old)
        rec.promoted = time.monotonic()
        time.sleep(self.rng.uniform(10, 25))
        self._volume(old, create=False)
        self._volume(new, create=True)
        rec.moved = time.monotonic()
        self.lab.wait_steady(new, images=self.images)
        if drpc:
            self._drpc_phase("Relocated" if rec.drpc == "Relocating" else "FailedOver")
        rec.settled = time.monotonic()
        self.primary = new
        self.switches.append(rec)
        return rec

    # ------------------------------------------------------------- a site loss
    def lose_site(self, cluster: str) -> None:
        """The site is gone: Ceph daemons frozen, API server down with its connections reset."""
        self._ports = getattr(self, "_ports", {})
        self._ports[cluster] = int(self.kube[cluster].url.rsplit(":", 1)[1])
        self.lab.freeze(cluster)
        self.kube[cluster].stop()

    def fail_over_to(self, survivor: str) -> SwitchRecord:
        """What an operator (or Ramen's failover) does on the survivor after losing the
        primary: force-promote every image, then create the PVC/PV/VRs there."""
        rec = SwitchRecord(self.primary, survivor, None, time.monotonic())
        for image in self.images:
            self.lab.promote(survivor, force=True, image=image)
        rec.promoted = time.monotonic()
        time.sleep(15)
        self._volume(survivor, create=True)
        rec.moved = time.monotonic()
        self.primary = survivor
        return rec

    def return_site(self, cluster: str) -> None:
        """The lost site comes back as it was: un-fenced, its images primary, its objects."""
        self.lab.freeze(cluster, frozen=False)
        self.kube[cluster].start(self._ports[cluster])

    def recover(self, old: str) -> None:
        """Ramen's recovery of the returned site: its VRs to secondary, demote, resync, its
        PVC/PV/VRs deleted; then wait for it to replay from the survivor."""
        patch = {"spec": {"replicationState": "secondary"}}
        for image in self.images:
            if image not in self.group_images:
                self.kube[old].patch(VR, NS, claim_of(image), patch)
        if self.grouped:
            self.kube[old].patch(self.vgr[old], NS, GROUP, patch)
        for image in self.images:
            self.lab.rbd(old, "mirror", "image", "demote", f"{POOL}/{image}")
            self.lab.rbd(old, "mirror", "image", "resync", f"{POOL}/{image}")
        self._group_demoted(old)
        self._volume(old, create=False)
        self.lab.wait_steady(self.primary, timeout=420, images=self.images)
        # The returned site's rbd-mirror known to its manager again: until then its pool is
        # rightly unhealthy, and "after recovery nothing" would time the lab, not auditd.
        self.lab.wait_pools_ok()

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
