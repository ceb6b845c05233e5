"""`auditd explain` judges as the daemon does: one loader (facts, image records, open DR
windows), one engine, the same `now`. Checked at the moments where they used to disagree: in the
middle of a switch (stale records, an open window) and right after it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from switch_replay import Capture, Replay, ramen_switches

from auditd.report.explain import explain_doc, explain_text
from auditd.rules.model import Finding, Unknown

CAPTURE = Capture.load()
START = min(t[0] for t in CAPTURE.times.values())


def _verdict(v: object) -> str:
    return "VIOLATED" if isinstance(v, Finding) else ("unknown" if isinstance(v, Unknown) else "ok")


@pytest.mark.parametrize(
    "moment",
    [
        ("vr-secondary site-a", 1),  # the window just opened
        ("promoted site-b", 3),  # both records stale: dr1 "primary", dr2 "remote demoted"
        ("k8s-moved site-a", 5),  # the PVC already on dr2, records still catching up
        ("k8s-moved site-a", 50),  # settled
    ],
)
def test_explain_gives_the_daemons_verdicts(tmp_path: Path, moment: tuple[str, int]) -> None:
    action, after = moment
    r = Replay(tmp_path, CAPTURE, 10)
    at = CAPTURE.action(action) + timedelta(seconds=after)
    r.run(at, ramen_switches(r, CAPTURE, START))
    now = r.clock.now()
    doc = explain_doc(r.sessions(), r.config, "replicapool/csi-vol-0001", now)
    assert doc is not None
    daemon = r.ingest.rules.evaluate(r.ingest.inventory, set(r.ingest.inventory.objects), now)
    explained = {(row["rule"], row["subject"]): row["verdict"] for row in doc["verdicts"]}
    assert explained, doc
    mine = {key: _verdict(daemon[key]) for key in explained}
    assert explained == mine
    # And the view itself: the same primary, the same window.
    vid = next(v for v in r.ingest.rules.correlator.volumes() if v.image == "csi-vol-0001")
    view = r.ingest.rules.correlator.view(r.ingest.inventory, vid)
    assert doc["primary"] == view.primary_cluster and doc["settled"] == view.settled
    window = r.ingest.rules.windows.open.get(vid)
    assert (doc["window"] or {}).get("trigger") == (window.trigger if window else None)


def test_explain_shows_a_pvc_left_behind_holding_the_window_open(tmp_path: Path) -> None:
    """The old primary's PV deleted, its PVC not yet (Terminating, or its stream behind): the
    view holds no PVC there, yet the switch is not over. Explain names the PVC left, shows the
    window still open, and gives its verdict as the daemon does."""
    r = Replay(tmp_path, CAPTURE, 10)
    plan = []
    for at, items in ramen_switches(r, CAPTURE, START):
        left = [i for i in items if i.type == "DELETED" and i.kind == "PersistentVolumeClaim"]
        plan.append((at, [i for i in items if i not in left]))
        if left:
            plan.append((at + timedelta(seconds=60), left))
    r.run(CAPTURE.action("k8s-moved site-a") + timedelta(seconds=40), plan)
    now = r.clock.now()
    doc = explain_doc(r.sessions(), r.config, "replicapool/csi-vol-0001", now)
    assert doc is not None
    [dr1] = [s for s in doc["sides"] if s["cluster"] == "dr1"]
    assert dr1["pvc"] is None and dr1["unlinked_pvc"] == "app/data", dr1
    assert doc["window"] is not None and doc["window"]["from"] == "dr1", doc["window"]
    row = next(
        x
        for x in doc["verdicts"]
        if (x["rule"], x["subject"]) == ("pvc-on-secondary", "dr1/PersistentVolumeClaim/app/data")
    )
    daemon = r.ingest.rules.evaluate(r.ingest.inventory, set(r.ingest.inventory.objects), now)
    assert row["verdict"] == _verdict(daemon[("pvc-on-secondary", row["subject"])]) == "ok"
    assert "dr1 also holds PVC app/data" in explain_text(doc)
