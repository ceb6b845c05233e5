"""The report as readable sections: titles, notes and tables of strings.

Pure: ReportData in, sections out. The text, markdown and HTML renderers all lay out these
same sections, so the three formats never disagree about what the report says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditd import durations
from auditd.report.query import ReportData, parse_iso

VOLUME_ROWS = 20  # the worst volumes shown in text formats; JSON has them all


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    empty: str = "(none)"


def short_time(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else "-"


def _secs(value: float | None) -> str:
    return "-" if value is None else durations.human(timedelta(seconds=value))


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%" if share < 1 else "100%"


def _since(iso: str | None, until: datetime) -> str:
    if not iso:
        return "-"
    return durations.human(until - parse_iso(iso))


def headline(data: ReportData) -> list[str]:
    s = data.summary
    mttr = _secs(s["mttr_seconds"])
    lines = [
        f"auditd report  {short_time(data.since.isoformat())} .. "
        f"{short_time(data.until.isoformat())} UTC",
        f"{s['opened']} incident(s) opened, {s['resolved']} resolved, {s['open']} open at the "
        f"end; MTTR {mttr}; {data.transitions_total} transition(s)",
    ]
    narrowed = ", ".join(f"{k} {v}" for k, v in data.filters.as_dict().items() if v)
    if narrowed:
        lines.append(f"filtered to {narrowed}")
    return lines + data.notes


def sections(data: ReportData) -> list[Section]:
    s = data.summary
    out = [
        Section(
            "summary",
            "Summary by rule",
            ["RULE", "OPENED", "RESOLVED", "OPEN", "MTTR"],
            [
                [
                    r["rule"],
                    str(r["opened"]),
                    str(r["resolved"]),
                    str(r["open"]),
                    _secs(r["mttr_seconds"]),
                ]
                for r in s["by_rule"]
            ],
            notes=[
                "by severity: "
                + (
                    ", ".join(
                        f"{b['severity']} {b['opened']} opened / {b['open']} open"
                        for b in s["by_severity"]
                    )
                    or "no incidents"
                )
            ],
            empty="no incidents in the window",
        ),
        Section(
            "open_incidents",
            "Open incidents",
            ["SEVERITY", "RULE", "SUBJECT", "FIRING SINCE", "FOR"],
            [
                [
                    v["severity"],
                    v["rule"],
                    v["subject"],
                    short_time(v["fired_at"]),
                    _since(v["fired_at"], data.until),
                ]
                for v in data.open_incidents
            ],
            empty="none: every incident is resolved",
        ),
    ]
    worst = data.volumes[:VOLUME_ROWS]
    rest = data.volumes[VOLUME_ROWS:]
    notes = []
    if rest:
        lowest = min(v["healthy_share"] for v in rest)
        notes.append(f"{len(rest)} more image(s), each at least {_pct(lowest)} healthy")
    out.append(
        Section(
            "volumes",
            "Replication health (worst first)",
            ["VOLUME", "IMAGE", "CLUSTER", "HEALTHY", "WORST LAG"],
            [
                [
                    v["volume"] or "-",
                    f"{v['pool']}/{v['image']}",
                    v["cluster"],
                    _pct(v["healthy_share"]),
                    _secs(v["worst_lag_seconds"]),
                ]
                for v in worst
            ],
            notes=notes,
            empty="no RBD mirror state recorded in the window (are probes configured?)",
        )
    )
    out.append(
        Section(
            "episodes",
            "Failovers and relocates",
            ["VOLUME", "TRIGGER", "FROM -> TO", "STARTED", "RTO", "STEPS"],
            [
                [
                    f"{e['pool']}/{e['image']}",
                    e["trigger"],
                    f"{e['from_cluster'] or '?'} -> {e['to_cluster'] or '?'}",
                    short_time(e["started_at"]),
                    _secs(e["rto_seconds"]) if e["ended_at"] else "in progress",
                    "; ".join(f"{short_time(st['at'])[11:]} {st['what']}" for st in e["steps"]),
                ]
                for e in data.episodes
            ],
        )
    )
    if data.applications:
        out.append(_applications(data))
    out.append(
        Section(
            "blind_spots",
            "Audit blind spots",
            ["CLUSTER", "WHAT", "STATE", "FROM", "TO", "FOR"],
            [
                [
                    b["cluster"],
                    b["what"],
                    b["state"],
                    short_time(b["started_at"]),
                    short_time(b["ended_at"]) if b["ended_at"] else "still",
                    _secs(b["seconds"]),
                ]
                for b in data.blind_spots
            ],
            empty="none: auditd saw both clusters the whole window",
        )
    )
    d = data.delivery
    out.append(
        Section(
            "delivery",
            "Alert delivery",
            ["DEAD LETTER", "SINK", "EVENT", "ATTEMPTS", "ERROR"],
            [
                [str(x["id"]), x["sink"], x["event"], str(x["attempts"]), x["error"] or "-"]
                for x in d["dead_letters"]
            ],
            notes=[
                "alerts: " + _counts(d["alerts"]),
                "messages: " + _counts(d["messages"]) + f"; {d['retried']} needed a retry",
            ],
            empty="no dead letters",
        )
    )
    out.append(
        Section(
            "incidents",
            "Incidents in the window",
            ["STATE", "SEVERITY", "RULE", "SUBJECT", "FIRST SEEN", "RESOLVED"],
            [
                [
                    v["state"],
                    v["severity"],
                    v["rule"],
                    v["subject"],
                    short_time(v["first_seen"]),
                    short_time(v["resolved_at"]),
                ]
                for v in data.violations
            ],
        )
    )
    shown = len(data.transitions)
    out.append(
        Section(
            "timeline",
            "Timeline of transitions",
            ["OBSERVED", "CLUSTER", "OBJECT", "FIELD", "OLD -> NEW", "SOURCE"],
            [
                [
                    short_time(t["observed_at"]),
                    t["cluster"],
                    f"{t['kind']} {t['namespace'] + '/' if t['namespace'] else ''}{t['name']}",
                    t["field"],
                    f"{t['old'] if t['old'] is not None else '-'} -> "
                    f"{t['new'] if t['new'] is not None else '-'}",
                    t["source"] + (" (late)" if t["late"] else ""),
                ]
                for t in data.transitions
            ],
            notes=[f"the last {shown} of {data.transitions_total}"]
            if shown < data.transitions_total
            else [],
        )
    )
    return out


def _applications(data: ReportData) -> Section:
    rows = []
    for a in data.applications:
        act = a["last_action"]
        rows.append(
            [
                a["application"],
                f"{a['phase'] or '?'}" + (f" ({a['progression']})" if a["progression"] else ""),
                f"{act['phase']} {short_time(act['started_at'])}, "
                f"{len({e['volume'] for e in act['volume_episodes']})}/{a['volumes']} switched"
                + (f" ({len(a['actions'])} in window)" if len(a["actions"]) > 1 else "")
                if act
                else "-",
                (_secs(act["ramen_seconds"]) if act["ended_at"] else "in progress") if act else "-",
                _secs(act["storage_rto_seconds"]) if act else "-",
                _secs(a["ramen_rpo_seconds"]),
                _secs(a["ceph_worst_lag_seconds"]),
                str(a["volumes"]),
            ]
        )
    return Section(
        "applications",
        "Applications (Ramen)",
        ["APPLICATION", "PHASE", "LAST ACTION", "RTO (RAMEN)", "RTO (STORAGE)",
         "RPO (RAMEN)", "WORST LAG (CEPH)", "VOLUMES"],
        rows,
        notes=[
            "each DRPC action is one episode of its application: LAST ACTION counts its "
            "volumes whose switch began with it; RTO as Ramen's DRPC measures it (action to "
            "rest) and as storage does (the slowest of those switches); RPO as Ramen's "
            "lastGroupSyncTime says it now, and the worst lag Ceph showed in the window"
        ],
    )  # fmt: skip


def _counts(by_status: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())) or "none"
