"""A Ramen hub beside the DR pair: three fake API servers through the real client.

The hub is watched for what Ramen keeps there (DRPlacementControl, DRPolicy, DRCluster) and
nothing else; its DRPC's action opens the DR window of its application's volumes on the
managed clusters, and an action that does not finish is a violation of the pair it serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from helpers import history, wait_until
from paths import DATA
from sqlalchemy import select

from auditd.clock import SYSTEM
from auditd.daemon import runner
from auditd.report.explain import explain_doc, explain_text
from auditd.report.status import load_status
from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI, write_kubeconfig
from auditd.sources.kube.kinds import PV, PVC
from auditd.store.models import ViolationRow

CRDS = DATA / "crds"
STUCK = "hub/DRPlacementControl/app/app"


def _crd(name: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / f"ramendr.openshift.io_{name}.yaml").read_text())  # type: ignore[no-any-return]


def test_the_hub_is_watched_for_ramen_and_its_drpc_action_is_judged_with_the_pair(
    make_config: Any, clusters: dict[str, Any], tmp_path: Path
) -> None:
    hub = FakeKubeAPI("hub", bookmark_interval=0.2).start()
    try:
        kubeconfig = tmp_path / "three"
        urls = {"dr1": clusters["dr1"].url, "dr2": clusters["dr2"].url, "hub": hub.url}
        write_kubeconfig(str(kubeconfig), urls)
        drpc_kind = hub.install_crd(_crd("drplacementcontrols"))
        for name in ("drpolicies", "drclusters"):
            hub.install_crd(_crd(name))
        clusters["dr1"].create(PVC, objects.pvc("data", "app", volume="pv-data"))
        clusters["dr1"].create(PV, objects.pv("pv-data", "app", "data", image="csi-vol-0001"))
        config = make_config(
            database_url=f"sqlite:///{tmp_path / 'h.db'}",
            clusters=[
                {"name": n, "kubeconfig": str(kubeconfig), "context": n, "role": r}
                for n, r in (("dr1", "primary"), ("dr2", "secondary"), ("hub", "hub"))
            ],
            pairs=[
                {"name": "dr1-dr2", "clusters": ["dr1", "dr2"], "pools": ["replicapool"],
                 "hub": "hub"},
            ],
            rules={"drpc-progression-stuck": {"for": "0s"}},
        )  # fmt: skip
        url = config.database_url
        daemon = runner.Daemon(config)
        daemon.start()
        try:
            assert daemon.wait_synced(20)
            drpc = {
                "metadata": {"name": "app", "namespace": "app"},
                "spec": {"action": "Failover", "failoverCluster": "dr2"},
                "status": {"phase": "FailingOver", "progression": "WaitForReadiness"},
            }
            hub.create(drpc_kind, drpc)

            def stuck() -> list[tuple[str, str, str | None]]:
                with history(url) as s:
                    rows = s.scalars(
                        select(ViolationRow).where(ViolationRow.rule == "drpc-progression-stuck")
                    )
                    return [(r.subject, r.state, r.pair) for r in rows]

            wait_until(lambda: stuck() == [(STUCK, "firing", "dr1-dr2")], 20)
            with history(url) as s:
                doc = load_status(s, SYSTEM.now())
                explained = explain_doc(s, config, "app/data", SYSTEM.now())
                application = explain_doc(s, config, "drpc/app/app", SYSTEM.now())
                assert explain_doc(s, config, "drpc/app/nope", SYSTEM.now()) is None
            streams = {(st["cluster"], st["kind"]): st["state"] for st in doc["streams"]}
            on_hub = {k for c, k in streams if c == "hub"}
            assert on_hub == {"DRPlacementControl", "DRPolicy", "DRCluster"}, streams
            assert all(streams[("hub", k)] == "ok" for k in on_hub), streams
            assert ("dr1", "DRPolicy") not in streams and (
                "dr1",
                "PersistentVolumeClaim",
            ) in streams
            # The hub's DRPC is the volume's application: its action is the volume's window.
            assert explained is not None and explained["drpc_phases"] == ["FailingOver"]
            # `auditd explain drpc/app/app`: the application, its volumes, and its verdicts.
            assert application is not None
            assert [(d["cluster"], d["phase"]) for d in application["drpcs"]] == [
                ("hub", "FailingOver")
            ]
            [volume] = application["volumes"]
            assert (volume["volume"], volume["pvc"]) == (
                "dr1-dr2/replicapool/csi-vol-0001",
                "app/data",
            )
            assert volume["primary"] is None and volume["lag_seconds"] is None  # never probed
            stuck_rows = [
                r for r in application["verdicts"] if r["rule"] == "drpc-progression-stuck"
            ]
            assert [(r["subject"], r["verdict"]) for r in stuck_rows] == [(STUCK, "VIOLATED")]
            text = explain_text(application)
            assert text.startswith("application app/app") and "WaitForReadiness" in text
            assert "dr1-dr2/replicapool/csi-vol-0001" in text and "unknown" in text

            done = {**drpc, "status": {"phase": "FailedOver", "progression": "Completed"}}
            hub.replace(drpc_kind, done)
            wait_until(lambda: stuck() == [(STUCK, "resolved", "dr1-dr2")], 20)
        finally:
            daemon.stop()
    finally:
        hub.stop()
