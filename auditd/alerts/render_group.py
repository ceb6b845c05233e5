"""Turn an incident (a group of alerts) into its messages.

An incident of one violation reads exactly like that violation's alert. An incident of many
reads as counts plus the first few volumes, never one line per volume: 500 images behind a dead
rbd-mirror daemon are one message. Each payload may carry ``parent``: what the incident's first
message is edited to (its current state), for sinks with threads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auditd import durations
from auditd.alerts.grouping import Diff, Event, Member, worst_severity
from auditd.alerts.render import ICON, fields_block, utc_text

LIST_LIMIT = 10


def _span(members: list[Member], opened_at: datetime, now: datetime) -> str:
    """How long the incident lasted: first firing to last resolve."""
    fired = [m.payload.get("fired_at") for m in members]
    ended = [m.payload.get("resolved_at") for m in members]
    start = min((datetime.fromisoformat(t) for t in fired if t), default=opened_at)
    end = max((datetime.fromisoformat(t) for t in ended if t), default=now)
    return durations.human(end - start)


def _noun(rule: str) -> str:
    """What one member of an incident of this rule is."""
    if rule.startswith("pool-"):
        return "pools"
    return "clusters" if rule == "audit-blind-spot" else "volumes"


def _rule(labels: dict[str, str], members: list[Member]) -> str:
    return labels.get("rule") or ", ".join(sorted({str(m.payload.get("rule")) for m in members}))


def _where(labels: dict[str, str], members: list[Member]) -> str:
    parts = []
    for key in ("pair", "cluster", "namespace"):
        values = sorted({str((m.payload.get("labels") or {}).get(key) or "") for m in members})
        values = [v for v in values if v]
        if len(values) == 1:
            parts.append(f"{key} {values[0]}")
        elif values:
            parts.append(f"{len(values)} {key}s")
    return " / ".join(parts) or "-"


def _lines(members: list[Member]) -> str:
    shown = [f"• `{m.payload.get('subject')}`: {m.payload.get('summary', '')}" for m in members]
    more = len(shown) - LIST_LIMIT
    text = "\n".join(shown[:LIST_LIMIT])
    return text + (f"\n… and {more} more" if more > 0 else "")


def _view(
    labels: dict[str, str], members: list[Member], opened_at: datetime, now: datetime
) -> tuple[str, list[dict[str, Any]], str]:
    """The incident's current state: its first message, kept up to date."""
    firing = [m for m in members if m.state == "firing"]
    rule, where = _rule(labels, members), _where(labels, members)
    noun = _noun(rule)
    if firing:
        sev = worst_severity(firing)
        headline = (
            f"{ICON.get(sev, '')} {sev.upper()} {rule}: "
            f"{len(firing)} of {len(members)} {noun} firing"
        ).strip()
        text = f"FIRING [{sev}] {rule}: {len(firing)} {noun} ({where}; since {utc_text(opened_at)})"
    else:
        lasted = _span(members, opened_at, now)
        headline = f":white_check_mark: RESOLVED {rule}: all {len(members)} {noun} recovered"
        text = f"RESOLVED {rule}: all {len(members)} {noun} recovered after {lasted} ({where})"
        sev = worst_severity(members)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
        fields_block(
            ("Rule", rule), ("Severity", sev), ("Where", where), ("Opened", utc_text(opened_at))
        ),
    ]
    if firing:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Firing ({len(firing)})*\n{_lines(firing)}"},
            }
        )
        verify = next((m.payload.get("verify") for m in firing if m.payload.get("verify")), "")
        if verify:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"Verify (first volume): `{verify}`"}],
                }
            )
    return text, blocks, sev


def render_group(
    event: Event,
    labels: dict[str, str],
    members: list[Member],
    change: Diff,
    opened_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    if len(members) == 1:
        return _render_single(event, members[0], change)
    text, blocks, sev = _view(labels, members, opened_at, now)
    payload: dict[str, Any] = {
        "event": event,
        "rule": _rule(labels, members),
        "severity": sev,
        "labels": {**labels, "severity": sev},
        "members": len(members),
        "firing": sum(m.state == "firing" for m in members),
    }
    if event == "firing":
        return {**payload, "text": text, "blocks": blocks}
    parent = {"text": text, "blocks": blocks}
    if event == "resolved":
        reply = text
    elif event == "repeat":
        noun = _noun(payload["rule"])
        reply = f"Still firing: {payload['firing']} of {len(members)} {noun}. {text}"
    else:
        reply = _change_text(change, payload["firing"], len(members))
    reply_blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": reply}}
    ]
    for title, group in (("Now firing", change.added), ("Resolved", change.resolved)):
        if group and event == "update":
            reply_blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*{title}*\n{_lines(group)}"},
                }
            )
    out = {**payload, "text": reply, "blocks": reply_blocks}
    if event != "repeat":
        out["parent"] = parent
    return out


def _change_text(change: Diff, firing: int, total: int) -> str:
    parts = []
    if change.added:
        parts.append(f"{len(change.added)} more firing")
    if change.resolved:
        parts.append(f"{len(change.resolved)} resolved")
    if change.changed_severity:
        parts.append(
            ", ".join(
                f"{m.payload.get('subject')} {old} -> {m.severity}"
                for m, old in change.changed_severity[:LIST_LIMIT]
            )
        )
    return f"UPDATE: {'; '.join(parts) or 'changed'}. Now {firing} of {total} firing."


def _render_single(event: Event, m: Member, change: Diff) -> dict[str, Any]:
    """One violation: its own alert text and DR table, as rendered when it changed."""
    p = m.payload
    if not isinstance(p.get("text"), str):
        raise ValueError(f"alert of violation {m.violation_id} has no text")
    if event == "firing":
        return {k: v for k, v in p.items() if k != "parent"}
    if event == "resolved":
        return {**p, "event": "resolved"}
    current = {"text": p["text"], "blocks": p.get("blocks", [])}
    if event == "repeat":
        text = f"Still firing: {p['text']}"
        return {**p, "event": "repeat", "text": text, "blocks": _section(text), "parent": None}
    if change.changed_severity:
        old = change.changed_severity[0][1]
        text = f"Severity {old} -> {m.severity}: {p.get('summary', '')}"
    else:
        text = f"UPDATE: {p['text']}"
    return {**p, "event": "update", "text": text, "blocks": _section(text), "parent": current}


def _section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
