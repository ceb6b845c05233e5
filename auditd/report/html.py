"""Render a report as one self-contained HTML file: inline CSS, an inline SVG timeline chart,
no scripts, no fonts or images from anywhere. It reads the same offline, attached to a ticket.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from auditd.report.query import ReportData, parse_iso
from auditd.report.sections import headline, sections, short_time

CHART_WIDTH = 960
LABEL_WIDTH = 260
ROW = 18
COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1100px; color: #1b1b1b; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #555; margin: 2px 0; } p.note { color: #555; font-style: italic; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
svg text { font: 11px ui-monospace, Menlo, Consolas, monospace; fill: #333; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
            vertical-align: -1px; }
"""


def _x(t: datetime, since: datetime, until: datetime) -> float:
    span = max((until - since).total_seconds(), 1e-9)
    frac = min(max((t - since).total_seconds() / span, 0.0), 1.0)
    return LABEL_WIDTH + frac * (CHART_WIDTH - LABEL_WIDTH - 10)


def _t(iso: str | None) -> datetime | None:
    return parse_iso(iso) if iso else None


def chart(data: ReportData) -> str:
    """Incidents as bars over the window (colour by severity), blind spots as grey bands,
    failovers as diamonds. Each incident is one ``rect.incident``."""
    incidents = [v for v in data.violations if v["fired_at"]]
    rows = len(incidents) + 1
    height = 30 + rows * ROW + 20
    since, until = data.since, data.until
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="timeline of incidents">'
    ]
    for b in data.blind_spots:
        start, end = _t(b["started_at"]), _t(b["ended_at"]) or until
        if start is None:
            continue
        x0, x1 = _x(start, since, until), _x(end, since, until)
        parts.append(
            f'<rect class="blind" x="{x0:.1f}" y="20" width="{max(x1 - x0, 1):.1f}" '
            f'height="{rows * ROW}" fill="#9e9e9e" fill-opacity="0.25">'
            f"<title>{escape(b['cluster'])} {escape(b['what'])} {escape(b['state'])}</title></rect>"
        )
    for i in range(6):
        t = since + (until - since) * i / 5
        x = _x(t, since, until)
        anchor = "end" if i == 5 else "middle"  # the last label must not run off the edge
        parts.append(
            f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{20 + rows * ROW}" stroke="#e0e0e0"/>'
            f'<text x="{x:.1f}" y="14" text-anchor="{anchor}">{t.strftime("%m-%d %H:%M")}</text>'
        )
    for row, v in enumerate(incidents):
        y = 24 + row * ROW
        start = _t(v["fired_at"]) or since
        end = _t(v["resolved_at"]) or until
        x0, x1 = _x(start, since, until), _x(end, since, until)
        label = f"{v['rule']} {v['subject']}"
        parts.append(
            f'<text x="4" y="{y + 11}">{escape(label[:36])}</text>'
            f'<rect class="incident" data-severity="{escape(v["severity"])}" '
            f'x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 2):.1f}" height="{ROW - 5}" rx="2" '
            f'fill="{COLOURS.get(v["severity"], "#555")}">'
            f"<title>{escape(v['severity'])} {escape(label)}: {escape(v['summary'])} "
            f"({short_time(v['fired_at'])} .. {short_time(v['resolved_at']) if v['resolved_at'] else 'open'})"
            "</title></rect>"
        )
    y = 24 + len(incidents) * ROW
    parts.append(f'<text x="4" y="{y + 11}">failovers / relocates</text>')
    for e in data.episodes:
        at = _t(e["started_at"])
        if at is None:
            continue
        x = _x(at, since, until)
        parts.append(
            f'<path class="episode" d="M{x:.1f},{y} l6,6 l-6,6 l-6,-6 z" fill="#2e7d32">'
            f"<title>{escape(e['trigger'])} {escape(e['pool'])}/{escape(e['image'])} "
            f"{escape(str(e['from_cluster']))} -> {escape(str(e['to_cluster']))}</title></path>"
        )
    parts.append("</svg>")
    return "".join(parts)


def to_html(data: ReportData) -> str:
    first, *rest = headline(data)
    body = [f"<h1>{escape(first)}</h1>"]
    body += [f'<p class="meta">{escape(line)}</p>' for line in rest]
    body.append("<h2>Timeline</h2>")
    body.append(
        '<p class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{s}</span>' for s, c in COLOURS.items())
        + '<span><i style="background:#9e9e9e66"></i>blind spot</span>'
        + '<span><i style="background:#2e7d32"></i>failover / relocate</span></p>'
    )
    body.append(chart(data))
    for sec in sections(data):
        body.append(f'<h2 id="{sec.key}">{escape(sec.title)}</h2>')
        body += [f'<p class="note">{escape(n)}</p>' for n in sec.notes]
        if not sec.rows:
            body.append(f"<p>{escape(sec.empty)}</p>")
            continue
        head = "".join(f"<th>{escape(h)}</th>" for h in sec.headers)
        rows = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in sec.rows
        )
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(first)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
