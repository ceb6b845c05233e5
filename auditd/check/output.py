"""`auditd check` for people (a table), for scripts (json) and for CI systems (JUnit XML: one
test case per volume and rule, so a pipeline shows each as passed, failed or skipped)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree as ET

from auditd.check.judge import Check, Row
from auditd.check.preflight import Preflight
from auditd.report.render import table

EXIT_MEANING = {
    0: "all good: every volume judged, nothing violated",
    1: "violations found",
    3: "could not see everything: not a pass",
    4: "a switch is in progress: what it makes transient is not judged",
}
NOTE = (
    "Verdicts as they stand now: rules' for-durations do not apply (nothing has lasted yet in "
    "one look), as `auditd explain` shows them."
)


def _by_volume(check: Check) -> dict[str, list[Row]]:
    """Each volume's rows, grouped once (scanning every row per volume was O(volumes x rows):
    a minute at 10,000 volumes)."""
    out: dict[str, list[Row]] = {v: [] for v in check.volumes}
    for r in check.rows:
        out.setdefault(r.volume, []).append(r)
    return out


def doc(check: Check) -> dict[str, Any]:
    rows = _by_volume(check)
    return {
        "at": check.at,
        "exit_code": check.exit_code,
        "meaning": EXIT_MEANING[check.exit_code],
        "note": NOTE,
        "unseen": list(check.unseen),
        "switching": list(check.switching),
        "volumes": [
            {
                "volume": v,
                "verdicts": [_row(r) for r in rows[v] if r.outcome != "ok"],
                "ok": sorted({r.rule for r in rows[v] if r.outcome == "ok"}),
                "verify_by_hand": list(check.commands.get(v, ())),
            }
            for v in check.volumes
        ],
        "other": [_row(r) for r in check.rows if r.volume not in check.commands],
    }


def _row(r: Any) -> dict[str, Any]:
    d = asdict(r)
    d["verify"] = list(r.verify)
    return d


def to_json(check: Check) -> str:
    return json.dumps(doc(check), indent=2, default=str) + "\n"


def to_table(check: Check) -> str:
    lines = [f"auditd check at {check.at}: {EXIT_MEANING[check.exit_code]}", NOTE, ""]
    if check.unseen:
        lines += ["COULD NOT SEE", *(f"  {u}" for u in check.unseen), ""]
    rows = [
        [r.volume, r.rule, r.outcome.upper(), r.severity, r.summary]
        for r in check.rows
        if r.outcome != "ok"
    ]
    grouped = _by_volume(check)
    per_volume = {v: sum(1 for r in grouped[v] if r.outcome == "ok") for v in check.volumes}
    clean = [v for v in check.volumes if all(r.outcome == "ok" for r in grouped[v])]
    if rows:
        lines += [table(["VOLUME", "RULE", "VERDICT", "SEVERITY", "SUMMARY"], rows), ""]
        for r in check.rows:
            if r.outcome in ("violated", "switching") and r.verify:
                lines.append(f"verify {r.rule} {r.subject}:")
                lines += [f"  {c}" for c in r.verify]
        lines.append("")
    lines.append(
        f"{len(check.volumes)} volume(s): {len(clean)} with every rule ok"
        + (f" ({sum(per_volume.values())} verdicts ok)" if per_volume else "")
    )
    return "\n".join(lines).rstrip() + "\n"


def to_junit(check: Check) -> str:
    """One <testsuite> per volume (and one for what belongs to none), one <testcase> per rule:
    violated is a failure, unknown an error (not seen is never a pass), switching skipped."""
    suites = ET.Element("testsuites", name="auditd check", timestamp=check.at)
    groups: dict[str, list[Any]] = {}
    for r in check.rows:
        groups.setdefault(r.volume, []).append(r)
    for name, rows in sorted(groups.items()):
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=name,
            tests=str(len(rows)),
            failures=str(sum(r.outcome == "violated" for r in rows)),
            errors=str(sum(r.outcome == "unknown" for r in rows)),
            skipped=str(sum(r.outcome == "switching" for r in rows)),
        )
        for r in rows:
            case = ET.SubElement(suite, "testcase", classname=name, name=f"{r.rule} {r.subject}")
            detail = "\n".join([r.summary, *(f"verify: {c}" for c in r.verify)])
            if r.outcome == "violated":
                ET.SubElement(case, "failure", message=r.summary, type=r.severity).text = detail
            elif r.outcome == "unknown":
                ET.SubElement(case, "error", message="unknown: could not be seen").text = detail
            elif r.outcome == "switching":
                ET.SubElement(case, "skipped", message=f"switch in progress: {r.summary}")
    if check.unseen:
        suite = ET.SubElement(
            suites, "testsuite", name="visibility", tests="1", errors="1", failures="0"
        )
        case = ET.SubElement(suite, "testcase", classname="visibility", name="everything seen")
        ET.SubElement(case, "error", message="could not see everything").text = "\n".join(
            check.unseen
        )
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


GO_MEANING = {
    0: "GO: every volume can fail over now",
    1: "NO-GO",
    3: "could not see everything: not a go",
}


def _go(value: bool | None) -> str:
    return {True: "GO", False: "NO-GO", None: "UNKNOWN"}[value]


def preflight_doc(p: Preflight) -> dict[str, Any]:
    return {
        "at": p.at,
        "exit_code": p.exit_code,
        "meaning": GO_MEANING[p.exit_code],
        "unseen": list(p.unseen),
        "notes": list(p.notes),
        "applications": {name: _go(go) for name, go in sorted(p.applications.items())},
        "volumes": [
            {
                "volume": d.volume,
                "application": d.application,
                "from": d.source,
                "to": d.target,
                "decision": _go(d.go),
                "reasons": [asdict(r) for r in d.reasons],
            }
            for d in p.decisions
        ],
    }


def preflight_json(p: Preflight) -> str:
    return json.dumps(preflight_doc(p), indent=2) + "\n"


def preflight_table(p: Preflight) -> str:
    lines = [f"auditd preflight at {p.at}: {GO_MEANING[p.exit_code]}", *p.notes, ""]
    if p.unseen:
        lines += ["COULD NOT SEE", *(f"  {u}" for u in p.unseen), ""]
    if not p.decisions:
        lines.append("no volume with a PVC or VolumeReplication to fail over")
        return "\n".join(lines) + "\n"
    rows = [
        [d.volume, d.application or "-", d.source or "?", d.target or "?", _go(d.go)]
        for d in p.decisions
    ]
    lines += [table(["VOLUME", "APPLICATION", "FROM", "TO", "DECISION"], rows), ""]
    for d in p.decisions:
        if d.go is True:
            continue
        lines.append(f"{d.volume}: {_go(d.go)}")
        for r in d.reasons:
            if r.ok is not True:
                mark = "no-go" if r.ok is False else "unknown"
                lines.append(f"  {mark:<7} {r.check}: {r.evidence}")
                lines.append(f"          verify: {r.verify}")
    if p.applications:
        lines += ["", "APPLICATIONS"]
        lines += [f"  {name}: {_go(go)}" for name, go in sorted(p.applications.items())]
    return "\n".join(lines).rstrip() + "\n"
