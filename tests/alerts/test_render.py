"""Alert messages: stored as data, put in words at delivery (Block Kit with a DR1-vs-DR2 table,
and a text line); rows stored before as words are delivered as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditd.alerts.message import Alert, Incident, Words, delivered, read
from auditd.alerts.render import render_alert
from auditd.alerts.render_group import words
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
    alert = Alert.of(active(ev), "rbd mirror image status POOL/IMAGE")
    assert alert.labels["pair"] == "p"
    said = render_alert(alert)
    msg = {"text": said.text, "blocks": said.blocks or []}
    assert msg["text"].startswith("FIRING [warning] secondary-not-replaying")
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
    said = render_alert(Alert.of(resolved, ""))
    msg = {"text": said.text, "blocks": said.blocks or []}
    assert said.parent == Words(said.text, said.blocks)  # the incident's first message, final
    assert msg["text"].startswith("RESOLVED") and "firing for 42m" in msg["text"]
    assert not any(
        "fields" in b and any("*dr1*" in f["text"] for f in b["fields"]) for b in msg["blocks"]
    )


def test_an_alert_is_stored_as_data_and_worded_the_same_after_the_round_trip() -> None:
    alert = Alert.of(active({"dr1.image": "up+stopped", "namespace": "app"}), "rbd x")
    stored = alert.to_json()
    assert "text" not in stored and "blocks" not in stored  # no sink's words in the outbox
    again = read(stored, incident=False)
    assert again == alert and words(again) == render_alert(alert)


def test_a_row_stored_before_schema_2_is_delivered_in_the_words_it_was_given() -> None:
    old = {
        "event": "firing",
        "rule": "split-brain",
        "subject": "p/replicapool/img",
        "severity": "critical",
        "summary": "both primary",
        "verify": "rbd mirror image status replicapool/img",
        "fired_at": T.isoformat(),
        "labels": {"rule": "split-brain", "pair": "p", "cluster": "dr1"},
        "text": "FIRING [critical] split-brain: both primary (as written then)",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*then*"}}],
    }
    alert = read(old, incident=False)
    assert isinstance(alert, Alert) and alert.pair == "p" and alert.fired_at == T
    assert words(alert).text == old["text"] and words(alert).blocks == old["blocks"]
    incident = read({"text": "FIRING 3 volumes", "blocks": None}, incident=True)
    assert incident == Words("FIRING 3 volumes")


def test_a_late_delivery_says_how_late_but_the_parent_view_stays() -> None:
    alert = Alert.of(active({}), "")
    on_time, late = (
        words(delivered(alert, timedelta(seconds=30))),
        words(delivered(alert, timedelta(minutes=20))),
    )
    assert "late" not in on_time.text
    assert late.text.endswith("[Delivered 20m late (the sink was unreachable).]")
    assert late.blocks is not None and "20m late" in str(late.blocks[-1])


def test_an_incident_message_survives_storage() -> None:
    from auditd.alerts.grouping import Diff, Member
    from auditd.alerts.incident import incident

    members = [
        Member(i, "firing", "warning", Alert.of(active({"namespace": "app"}), "rbd x"))
        for i in range(12)
    ]
    made = incident("firing", {"rule": "secondary-not-replaying"}, members, Diff([], [], []), T, T)
    assert made.firing.total == 12 and len(made.firing.shown) == 10
    back = read(made.to_json(), incident=True)
    assert isinstance(back, Incident) and back == made
    assert "… and 2 more" in str(words(back).blocks)
