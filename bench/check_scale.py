#!/usr/bin/env python3
"""`auditd check` wall time at N volumes (issue 22): one process, as a runbook runs it.

A simulated pair: dr1 holds N PVC/PV/VR triples on a fake API server (the real client lists
them), both sites answer `rbd mirror pool status` with N images (the real capture's shape,
re-timed to now, through the fake rbd and the real `direct` transport). Prints the check's wall
time beside its floor measured in the same run: the same lists fetched and decoded bare, and
the same two `rbd` calls.

    python bench/check_scale.py [--volumes 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sim.world import pair_config_toml
from auditd.sources.kube.kinds import PV, PVC, VR, VRC

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "data" / "rbd" / "healthy"
FAKE_RBD = [sys.executable, "-m", "auditd.sim.fakerbd"]


def pool_status(site: str, n: int) -> str:
    doc = json.loads((CAPTURES / f"{site}-mirror-pool-status-verbose.json").read_text())
    template = doc["images"][0]
    images = []
    for i in range(n):
        img = json.loads(json.dumps(template))
        img["name"] = f"csi-vol-{i:05d}"
        img["global_id"] = f"{i:08x}-a2af-4f92-81d1-62291b44b803"
        images.append(img)
    doc["images"] = images
    state = template["state"].split("+")[1]
    doc["summary"]["states"] = {state: n}
    return json.dumps(doc)


def populate(api: FakeKubeAPI, n: int) -> None:
    api.create(VRC, objects.vrc())
    for i in range(n):
        ns, claim = f"app-{i % 50:02d}", f"data-{i:05d}"
        api.create(PV, objects.pv(f"pv-{i:05d}", ns, claim, f"csi-vol-{i:05d}"))
        api.create(PVC, objects.pvc(claim, ns, volume=f"pv-{i:05d}"))
        api.create(VR, objects.vr(claim, ns, claim))


def floor(api: FakeKubeAPI, sites: dict[str, Path]) -> float:
    """The lists fetched and decoded, page by page, and the two rbd calls: no judging."""
    began = time.perf_counter()
    for path in ("/api/v1/persistentvolumeclaims", "/api/v1/persistentvolumes",
                 f"/apis/{VR.group}/{VR.version}/{VR.plural}"):  # fmt: skip
        cont = ""
        while True:
            url = f"{api.url}{path}?limit=500" + (f"&continue={cont}" if cont else "")
            with urllib.request.urlopen(url, timeout=60) as r:
                page = json.loads(r.read())
            cont = page["metadata"].get("continue") or ""
            if not cont:
                break
    for site in sites.values():
        subprocess.run(
            [*FAKE_RBD, "--conf", str(site / "ceph.conf"), "mirror", "pool", "status",
             "replicapool", "--verbose", "--format", "json"],
            check=True, capture_output=True,
        )  # fmt: skip
    return time.perf_counter() - began


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--volumes", type=int, default=10_000)
    args = ap.parse_args()
    n = args.volumes
    work = Path(tempfile.mkdtemp(prefix="auditd-check-bench-"))
    fixtures = work / "fixtures" / "big"
    fixtures.mkdir(parents=True)
    sites: dict[str, Path] = {}
    for cluster, site in (("dr1", "site-a"), ("dr2", "site-b")):
        (fixtures / f"{site}-mirror-pool-status-verbose.json").write_text(pool_status(site, n))
        d = work / site
        d.mkdir()
        (d / "ceph.conf").write_text("[global]\n")
        (d / "site").write_text(site)
        (d / "fixtures").write_text(str(work / "fixtures"))
        (d / "scenario").write_text("big")
        (d / "retime").write_text("5")
        sites[cluster] = d
    kube = {c: FakeKubeAPI(c).start() for c in ("dr1", "dr2")}
    try:
        t = time.perf_counter()
        populate(kube["dr1"], n)
        kube["dr2"].create(VRC, objects.vrc())
        print(
            f"check scale: {n} volumes ({3 * n} objects) simulated in {time.perf_counter() - t:.1f}s"
        )
        kc = work / "kubeconfig"
        write_kubeconfig(str(kc), {c: k.url for c, k in kube.items()})
        cfg = work / "auditd.toml"
        ceph = {
            c: {"conf": str(d / "ceph.conf"), "rbd_command": FAKE_RBD} for c, d in sites.items()
        }
        cfg.write_text(
            pair_config_toml(kc, f"sqlite:///{work / 'none.db'}", pools=("replicapool",), ceph=ceph)
        )
        base = floor(kube["dr1"], sites)
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "auditd", "check", "-c", str(cfg), "-o", "json"],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        took = time.perf_counter() - t
        doc = json.loads(done.stdout)
        print(f"  baseline: lists fetched and decoded + 2 rbd calls   {base:7.2f} s")
        print(
            f"  auditd check (whole process)                        {took:7.2f} s ({took / base:.1f}x)"
        )
        print(f"  exit {done.returncode} ({doc['meaning']}), {len(doc['volumes'])} volumes judged")
        return 0 if done.returncode in (0, 1, 3, 4) else 1
    finally:
        for k in kube.values():
            k.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
