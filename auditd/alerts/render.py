"""One alert in words: Slack Block Kit plus a plain-text line (what every text sink prints).

Rendered at delivery, for the sink that sends it; the outbox holds the alert itself
(``message.Alert``), so a retried delivery still says exactly what was decided.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from auditd import durations
from auditd.alerts.message import Alert, Words

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


def render_alert(a: Alert) -> Words:
    """The alert's words, with a note if it is delivered late. A row from before schema 2
    says what it said then."""
    return late_note(a.words if a.words is not None else _words(a), a.late)


def _words(v: Alert) -> Words:
    event, remediation = v.event, v.verify
    first_seen = v.first_seen or v.fired_at
    where = " / ".join(
        x for x in (v.pair and f"pair {v.pair}", v.cluster and f"cluster {v.cluster}") if x
    )
    if event == "resolved":
        start = v.fired_at or first_seen
        end = v.resolved_at or start
        lasted = durations.human(end - start) if start and end else "-"
        headline = f":white_check_mark: RESOLVED {v.rule} after {lasted}"
        text = f"RESOLVED [{v.severity}] {v.rule}: {v.summary} ({where}; firing for {lasted})"
    else:
        headline = f"{ICON.get(v.severity, '')} {v.severity.upper()} {v.rule}".strip()
        text = (
            f"FIRING [{v.severity}] {v.rule}: {v.summary} ({where}; since {utc_text(first_seen)})"
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
            ("First seen", utc_text(first_seen)),
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
    runbook = v.runbook_url
    if event != "resolved" and remediation:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"Verify: `{remediation}` · <{runbook}|runbook>"}
                ],
            }
        )
    return Words(text, blocks, Words(text, blocks) if event == "resolved" else None)


# A message this much older than its event says so: a reader must not take an alert that sat in
# the outbox through a Slack outage for something that just happened.
LATE = timedelta(minutes=2)


def late_note(words: Words, late: timedelta) -> Words:
    """Words delivered ``late`` after they were written, saying how late (the incident's first
    message, edited in place, stays as it is)."""
    if late < LATE:
        return words
    note = f"Delivered {durations.human(late)} late (the sink was unreachable)."
    blocks = words.blocks
    if blocks is not None:
        blocks = [
            *blocks,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{note}_"}]},
        ]
    return replace(words, text=f"{words.text} [{note}]", blocks=blocks)
