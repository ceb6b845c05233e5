"""Turn a violation change into a message: Slack Block Kit plus a plain-text fallback.

Rendered once, when the change is stored, so a retried delivery sends exactly what was decided.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from auditd import durations
from auditd.alerts.labels import labels
from auditd.rules.lifecycle import Active

ICON = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}


def utc_text(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "-"


def fields_block(*fields: tuple[str, str]) -> dict[str, Any]:
    """A Block Kit section of labelled fields (two columns in Slack)."""
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in fields],
    }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# Each rule's runbook: a section of docs/operations.md named after the rule.
RUNBOOKS = "https://github.com/auditd/auditd/blob/main/docs/operations.md"


def runbook_url(rule: str) -> str:
    return f"{RUNBOOKS}#{rule}"


def render(v: Active, event: str, remediation: str) -> dict[str, Any]:
    where = " / ".join(
        x for x in (v.pair and f"pair {v.pair}", v.cluster and f"cluster {v.cluster}") if x
    )
    if event == "resolved":
        lasted = durations.human((v.resolved_at or v.first_seen) - (v.fired_at or v.first_seen))
        headline = f":white_check_mark: RESOLVED {v.rule} after {lasted}"
        text = f"RESOLVED [{v.severity}] {v.rule}: {v.summary} ({where}; firing for {lasted})"
    else:
        headline = f"{ICON.get(v.severity, '')} {v.severity.upper()} {v.rule}".strip()
        text = (
            f"FIRING [{v.severity}] {v.rule}: {v.summary} ({where}; since {utc_text(v.first_seen)})"
        )
    sides = sorted({k.split(".", 1)[0] for k in v.evidence if k.endswith(".image")})
    per_side = {f"{c}.{f}" for c in sides for f in ("image", "probe", "pvc", "vr")}
    table_keys = per_side | {"last_sync_age", "drpc"}
    evidence = "\n".join(
        f"• {k}: `{val}`" for k, val in sorted(v.evidence.items()) if k not in table_keys
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{v.summary}"}},
        fields_block(
            ("Rule", v.rule),
            ("Severity", v.severity),
            ("Where", where or "-"),
            ("First seen", utc_text(v.first_seen)),
        ),
    ]
    if sides:
        # DR1 vs DR2: the state of each side of the volume, side by side.
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": f"*{c}*\n"
                        f"Image: {v.evidence.get(f'{c}.image', '-')}\n"
                        f"VR: {v.evidence.get(f'{c}.vr', '-')}\n"
                        f"PVC: {v.evidence.get(f'{c}.pvc', '-')}\n"
                        f"Probe: {v.evidence.get(f'{c}.probe', '-')}",
                    }
                    for c in sides[:2]
                ],
            }
        )
        facts = [
            f"{label}: {v.evidence[k]}"
            for k, label in (("last_sync_age", "Last sync"), ("drpc", "DRPC"))
            if k in v.evidence
        ]
        if facts:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]}
            )
    if evidence:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n{evidence}"}}
        )
    runbook = runbook_url(v.rule)
    if event != "resolved" and remediation:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"Verify: `{remediation}` · <{runbook}|runbook>"}
                ],
            }
        )
    payload: dict[str, Any] = {
        "event": event,
        "rule": v.rule,
        "subject": v.subject,
        "severity": v.severity,
        "summary": v.summary,
        "verify": remediation,
        "runbook_url": runbook,
        "fired_at": _iso(v.fired_at or v.first_seen),
        "resolved_at": _iso(v.resolved_at),
        # What silences (and later routing) match on.
        "labels": labels(v),
        "text": text,
        "blocks": blocks,
    }
    if event == "resolved":
        # The incident's first message is edited to this, its final state.
        payload["parent"] = {"text": text, "blocks": blocks}
    return payload


# A message this much older than its event says so: a reader must not take an alert that sat in
# the outbox through a Slack outage for something that just happened.
LATE = timedelta(minutes=2)


def delivered_late(payload: dict[str, Any], late: timedelta) -> dict[str, Any]:
    """The payload of a message delivered ``late`` after it was written, saying how late."""
    if late < LATE:
        return payload
    note = f"Delivered {durations.human(late)} late (the sink was unreachable)."
    out = dict(payload)
    out["text"] = f"{payload.get('text', '')} [{note}]"
    if isinstance(payload.get("blocks"), list):
        out["blocks"] = [
            *payload["blocks"],
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{note}_"}]},
        ]
    return out
