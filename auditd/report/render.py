"""Render a report as a terminal table or as JSON (schema version 1)."""

from __future__ import annotations

import json
from typing import Any

from auditd.report.query import ReportData, iso_utc

SCHEMA_VERSION = 1


def to_json(data: ReportData) -> str:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "window": {"since": iso_utc(data.since), "until": iso_utc(data.until)},
        "summary": {
            "transitions": len(data.transitions),
            "violations": len(data.violations),
            "open": sum(1 for v in data.violations if v["resolved_at"] is None),
        },
        "violations": data.violations,
        "transitions": data.transitions,
    }
    return json.dumps(doc, indent=2, sort_keys=False)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(s.rstrip() for s in out)


def _short_time(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else "-"


def to_table(data: ReportData) -> str:
    open_count = sum(1 for v in data.violations if v["resolved_at"] is None)
    parts = [
        f"auditd report  {_short_time(iso_utc(data.since))} .. {_short_time(iso_utc(data.until))} UTC",
        f"{len(data.violations)} violation(s), {open_count} open; "
        f"{len(data.transitions)} transition(s)",
        "",
        "VIOLATIONS",
    ]
    if data.violations:
        parts.append(
            table(
                ["STATE", "SEVERITY", "RULE", "SUBJECT", "FIRST SEEN", "RESOLVED"],
                [
                    [
                        v["state"],
                        v["severity"],
                        v["rule"],
                        v["subject"],
                        _short_time(v["first_seen"]),
                        _short_time(v["resolved_at"]),
                    ]
                    for v in data.violations
                ],
            )
        )
    else:
        parts.append("(none)")
    parts += ["", "TRANSITIONS"]
    if data.transitions:
        parts.append(
            table(
                ["OBSERVED", "CLUSTER", "OBJECT", "FIELD", "OLD -> NEW", "SOURCE"],
                [
                    [
                        _short_time(t["observed_at"]),
                        t["cluster"],
                        f"{t['kind']} {t['namespace'] + '/' if t['namespace'] else ''}{t['name']}",
                        t["field"],
                        f"{t['old'] if t['old'] is not None else '-'} -> "
                        f"{t['new'] if t['new'] is not None else '-'}",
                        t["source"] + (" (late)" if t["late"] else ""),
                    ]
                    for t in data.transitions
                ],
            )
        )
    else:
        parts.append("(none)")
    return "\n".join(parts) + "\n"
