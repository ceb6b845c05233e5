"""Render a report as a terminal table, Markdown, or JSON (schema: docs/report-schema.md)."""

from __future__ import annotations

import json
from typing import Any

from auditd.report.query import ReportData, iso_utc
from auditd.report.sections import headline, sections

SCHEMA_VERSION = 2


def to_json(data: ReportData) -> str:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "window": {"since": iso_utc(data.since), "until": iso_utc(data.until)},
        "filters": data.filters.as_dict(),
        "notes": data.notes,
        "summary": data.summary,
        "open_incidents": data.open_incidents,
        "volumes": data.volumes,
        "episodes": data.episodes,
        "applications": data.applications,
        "blind_spots": data.blind_spots,
        "delivery": data.delivery,
        "violations": data.violations,
        "transitions_total": data.transitions_total,
        "transitions": data.transitions,
    }
    return json.dumps(doc, indent=2)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(s.rstrip() for s in out)


def to_table(data: ReportData) -> str:
    parts = headline(data)
    for sec in sections(data):
        parts += ["", sec.title.upper()]
        parts += sec.notes
        parts.append(table(sec.headers, sec.rows) if sec.rows else sec.empty)
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(data: ReportData) -> str:
    """GitHub-flavoured Markdown: pastes into a postmortem or an issue as it is."""
    first, *rest = headline(data)
    parts = [f"# {first.replace('auditd report  ', 'auditd report: ')}", ""]
    parts += [f"{line}  " for line in rest]
    for sec in sections(data):
        parts += ["", f"## {sec.title}", ""]
        parts += [f"_{note}_  " for note in sec.notes]
        if sec.notes:
            parts.append("")
        if not sec.rows:
            parts.append(sec.empty)
            continue
        parts.append("| " + " | ".join(sec.headers) + " |")
        parts.append("|" + "|".join("---" for _ in sec.headers) + "|")
        parts += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in sec.rows]
    return "\n".join(parts) + "\n"
