"""An incident in words: Slack Block Kit plus a plain-text line, rendered at delivery.

An incident of one violation reads exactly like that violation's alert. An incident of many
reads as counts plus the first few volumes, never one line per volume. The words may carry
``parent``: what the incident's first message is edited to (its current state), for sinks with
threads.
"""

from __future__ import annotations

from typing import Any

from auditd import durations
from auditd.alerts.message import Alert, Incident, Listed, Message, Words
from auditd.alerts.render import ICON, fields_block, late_note, render_alert, utc_text


def words(message: Message) -> Words:
    """Any message the outbox holds, in words."""
    if isinstance(message, Alert):
        return render_alert(message)
    if isinstance(message, Incident):
        return late_note(render_incident(message), message.late)
    return late_note(message, message.late)


def _lines(x: Listed) -> str:
    text = "\n".join(f"• `{m.subject}`: {m.summary}" for m in x.shown)
    more = x.total - len(x.shown)
    return text + (f"\n… and {more} more" if more > 0 else "")


def _section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def _view(i: Incident) -> Words:
    """The incident's current state: its first message, kept up to date."""
    firing = i.firing.total
    if firing:
        headline = (
            f"{ICON.get(i.severity, '')} {i.severity.upper()} {i.rule}: "
            f"{firing} of {i.members} {i.noun} firing"
        ).strip()
        text = (
            f"FIRING [{i.severity}] {i.rule}: {firing} {i.noun} "
            f"({i.where}; since {utc_text(i.opened_at)})"
        )
    else:
        lasted = durations.human(i.lasted) if i.lasted is not None else "-"
        headline = f":white_check_mark: RESOLVED {i.rule}: all {i.members} {i.noun} recovered"
        text = f"RESOLVED {i.rule}: all {i.members} {i.noun} recovered after {lasted} ({i.where})"
    blocks: list[dict[str, Any]] = [
        *_section(f"*{headline}*"),
        fields_block(
            ("Rule", i.rule),
            ("Severity", i.severity),
            ("Where", i.where),
            ("Opened", utc_text(i.opened_at)),
        ),
    ]
    if firing:
        blocks += _section(f"*Firing ({firing})*\n{_lines(i.firing)}")
        if i.verify:
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"Verify (first volume): `{i.verify}`"}
                    ],
                }
            )
    return Words(text, blocks)


def render_incident(i: Incident) -> Words:
    if i.alone is not None:
        return _alone(i, i.alone)
    view = _view(i)
    if i.event == "firing":
        return view
    if i.event == "resolved":
        reply = view.text
    elif i.event == "repeat":
        reply = f"Still firing: {i.firing.total} of {i.members} {i.noun}. {view.text}"
    else:
        reply = _change_text(i)
    blocks = _section(reply)
    for title, group in (("Now firing", i.added), ("Resolved", i.resolved)):
        if group.total and i.event == "update":
            blocks += _section(f"*{title}*\n{_lines(group)}")
    return Words(reply, blocks, None if i.event == "repeat" else view)


def _change_text(i: Incident) -> str:
    parts = []
    if i.added.total:
        parts.append(f"{i.added.total} more firing")
    if i.resolved.total:
        parts.append(f"{i.resolved.total} resolved")
    if i.severity_changes:
        parts.append(", ".join(f"{s} {old} -> {new}" for s, old, new in i.severity_changes))
    return f"UPDATE: {'; '.join(parts) or 'changed'}. Now {i.firing.total} of {i.members} firing."


def _alone(i: Incident, a: Alert) -> Words:
    """One violation: its own alert text and DR table."""
    own = render_alert(a)
    if i.event == "firing":
        return Words(own.text, own.blocks)
    if i.event == "resolved":
        return own
    if i.event == "repeat":
        text = f"Still firing: {own.text}"
        return Words(text, _section(text))
    if i.severity_changes:
        text = f"Severity {i.severity_changes[0][1]} -> {a.severity}: {a.summary}"
    else:
        text = f"UPDATE: {own.text}"
    return Words(text, _section(text), Words(own.text, own.blocks))
