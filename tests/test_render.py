"""Alert messages: Block Kit with a DR1-vs-DR2 table, and a text fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.alerts.render import render
from auditd.rules.lifecycle import Active

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def active(evidence: dict[str, object]) -> Active:
    return Active(
        "secondary-not-replaying",
        "p/replicapool/csi-vol-0001",
        "firing",
        "warning",
        "csi-vol-0001 on dr2 (secondary) is down+stopped",
        "dr2",
        "p",
        evidence,
        T,
        T,
    )


def test_volume_alert_has_the_dr_table_evidence_and_verify_commands() -> None:
    ev = {
        "dr1.image": "up+stopped primary=true",
        "dr1.vr": "app/data primary/Primary",
        "dr1.pvc": "app/data",
        "dr1.probe": "ok",
        "dr2.image": "down+stopped primary=unknown",
        "dr2.probe": "ok",
        "last_sync_age": "12m",
        "drpc": "Deployed",
        "reasons": "x",
    }
    msg = render(active(ev), "firing", "rbd mirror image status POOL/IMAGE")
    assert (
        msg["text"].startswith("FIRING [warning] secondary-not-replaying")
        and msg["labels"]["pair"] == "p"
    )
    table = next(
        b
        for b in msg["blocks"]
        if b["type"] == "section" and any("*dr1*" in f["text"] for f in b.get("fields", []))
    )
    dr1, dr2 = (f["text"] for f in table["fields"])
    assert "Image: up+stopped primary=true" in dr1 and "VR: app/data primary/Primary" in dr1
    assert dr2.startswith("*dr2*") and "VR: -" in dr2
    texts = [e["text"] for b in msg["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert "Last sync: 12m · DRPC: Deployed" in texts and any("Verify" in t for t in texts)
    evidence = next(
        b["text"]["text"]
        for b in msg["blocks"]
        if b["type"] == "section" and "text" in b and "*Evidence*" in b["text"]["text"]
    )
    assert "reasons" in evidence and "dr1.image" not in evidence  # not said twice


def test_resolve_gives_the_duration_and_object_alerts_have_no_table() -> None:
    a = active({"namespace": "app", "phase": "Bound"})
    resolved = Active(
        **{**a.__dict__, "state": "resolved", "resolved_at": T + timedelta(minutes=42)}
    )
    msg = render(resolved, "resolved", "")
    assert msg["text"].startswith("RESOLVED") and "firing for 42m" in msg["text"]
    assert not any(
        "fields" in b and any("*dr1*" in f["text"] for f in b["fields"]) for b in msg["blocks"]
    )
