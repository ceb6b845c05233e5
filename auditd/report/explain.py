"""`auditd rules` and `auditd explain`: the rules with their config and counts, and one
volume's pair view with every rule's verdict and evidence, from the stored state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditd import durations
from auditd.config import Config
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.inventory.rbd_facts import RBD_POOL
from auditd.report.query import silent_since
from auditd.report.render import table
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Finding, Unknown
from auditd.rules.views import Side, VolumeView
from auditd.sources.kube import kinds
from auditd.store.load import load_state
from auditd.store.models import ViolationRow


def rules_doc(session: Session, config: Config) -> list[dict[str, Any]]:
    engine = RuleEngine(config)
    counts = dict(
        session.execute(
            select(ViolationRow.rule, func.count())
            .where(ViolationRow.resolved_at.is_(None), ViolationRow.state == "firing")
            .group_by(ViolationRow.rule)
        ).all()
    )
    from auditd.rules.catalogue import BUILTIN_RULES

    out = []
    for rule in BUILTIN_RULES:
        active = engine.rules.get(rule.id)
        override = config.rules.get(rule.id)
        out.append(
            {
                "id": rule.id,
                "enabled": active is not None,
                "severity": (active or rule).severity,
                "for": durations.compact((active or rule).for_),
                "namespaces": list(override.namespaces) if override else [],
                "firing": counts.get(rule.id, 0),
                "summary": rule.summary,
                "description": rule.description,
                "verify": rule.remediation,
            }
        )
    return out


def rules_table(doc: list[dict[str, Any]]) -> str:
    return (
        table(
            ["RULE", "ENABLED", "SEVERITY", "FOR", "FIRING", "SUMMARY"],
            [
                [
                    r["id"],
                    "yes" if r["enabled"] else "no",
                    r["severity"],
                    r["for"],
                    str(r["firing"]),
                    r["summary"],
                ]
                for r in doc
            ],
        )
        + "\n"
    )


def explain_doc(
    session: Session, config: Config, target: str, now: datetime
) -> dict[str, Any] | None:
    """The pair view of the volume named by pool/image or namespace/pvc, and every verdict, as
    the daemon judges at ``now``: the same loader (facts, image records, open DR windows) and
    the same engine."""
    inventory, engine, _ = load_state(session, config)
    verdicts = engine.evaluate(inventory, set(inventory.objects), now)
    view = _find(engine, inventory, target)
    if view is None:
        return None
    subjects = (
        {str(view.id)}
        | {str(k) for s in view.sides for k in (s.pvc, s.pv, *s.joined) if k is not None}
        | {str(ObjectKey(s.cluster, RBD_POOL, "", view.id.pool)) for s in view.sides}
    )
    rows = []
    for (rule, subject), verdict in sorted(verdicts.items()):
        if subject not in subjects:
            continue
        if isinstance(verdict, Finding):
            rows.append(
                {
                    "rule": rule,
                    "subject": subject,
                    "verdict": "VIOLATED",
                    "severity": verdict.severity,
                    "summary": verdict.summary,
                    "evidence": verdict.evidence,
                }
            )
        else:
            rows.append(
                {
                    "rule": rule,
                    "subject": subject,
                    "verdict": "unknown" if isinstance(verdict, Unknown) else "ok",
                }
            )
    silent = silent_since(session, now)
    if silent is not None:
        # Nobody is watching: what was fine when auditd last looked is not known to be now.
        for row in rows:
            if row["verdict"] == "ok":
                row["verdict"] = "unknown"
    window = engine.windows.open.get(view.id)
    return {
        "volume": str(view.id),
        "at": now.isoformat(),
        "primary": view.primary_cluster,
        "settled": view.settled,
        "in_transition": view.in_transition,
        "window": (
            {
                "since": window.started_at.isoformat(),
                "from": window.from_cluster,
                "trigger": window.trigger,
            }
            if window
            else None
        ),
        "synced_at": view.synced_at.isoformat() if view.synced_at else None,
        "drpc_phases": list(view.drpc_phases),
        "sides": [
            {
                "cluster": s.cluster,
                "configured_role": s.configured_role,
                "pvc": _name(s.pvc),
                "pv": _name(s.pv),
                "vr": _name(s.vr),
                "vrg": _name(s.vrg),
                "joined": [f"{k.kind} {_name(k)}" for k in s.joined],
                "image": _image_seen(s, now, config.probe.record_stale_after),
                "record_written_at": (
                    s.record.updated_at.isoformat() if s.record and s.record.updated_at else None
                ),
                "pool_probe": s.pool_probe,
                "blind": s.blind,
            }
            for s in view.sides
        ],
        "verdicts": rows,
        "note": (
            f"auditd has not reported since {silent.isoformat()}: the state shown is the last it "
            "saw, and nothing is known to be fine now"
            if silent is not None
            else None
        ),
    }


def _image_seen(side: Side, now: datetime, stale_after: timedelta) -> dict[str, Any] | None:
    """The image as the last probe said, except that nothing is healthy while the probe fails
    or when the last probe that listed it is old (auditd not running, say)."""
    if side.image is None:
        return None
    image = dict(side.image)
    seen = side.record.seen_at if side.record else None
    if seen is not None:
        image["last_probed"] = seen.isoformat()
    if not side.storage_known or seen is None or now - seen > stale_after:
        image["class"] = "unknown"
    return image


def _name(key: ObjectKey | None) -> str | None:
    return None if key is None else (f"{key.namespace}/{key.name}" if key.namespace else key.name)


def _find(engine: RuleEngine, inventory: Inventory, target: str) -> VolumeView | None:
    left, _, right = target.partition("/")
    for vid in sorted(engine.correlator.volumes()):
        if (vid.pool, vid.image) == (left, right):
            return engine.correlator.view(inventory, vid)
    for vid in sorted(engine.correlator.volumes()):
        view = engine.correlator.view(inventory, vid)
        if any(s.pvc and (s.pvc.namespace, s.pvc.name) == (left, right) for s in view.sides):
            return view
    return None


def explain_text(doc: dict[str, Any]) -> str:
    lines = [
        f"volume {doc['volume']}   primary: {doc['primary'] or 'unknown'}"
        + ("" if doc["settled"] else "   (storage records still catching up with a role change)")
        + (
            f"   (DR window since {doc['window']['since']}, from {doc['window']['from'] or '?'},"
            f" {doc['window']['trigger']})"
            if doc["window"]
            else ("   (both sides demoted)" if doc["in_transition"] else "")
        ),
        "",
    ]
    lines.append(
        table(
            ["CLUSTER", "ROLE (config)", "PVC", "PV", "VR", "IMAGE", "PRIMARY", "CLASS", "PROBE"],
            [
                [
                    s["cluster"],
                    s["configured_role"],
                    s["pvc"] or "-",
                    s["pv"] or "-",
                    s["vr"] or "-",
                    (s["image"] or {}).get("state", "not listed"),
                    (s["image"] or {}).get("primary", "-"),
                    (s["image"] or {}).get("class", "-"),
                    s["pool_probe"] or "not probed",
                ]
                for s in doc["sides"]
            ],
        )
    )
    for s in doc["sides"]:
        # The VR has its column; the rest joined through the kind catalogue (Ramen's VRG and
        # DRPC, groups) are listed under the table.
        others = [j for j in s.get("joined", ()) if j != f"{kinds.VR.kind} {s['vr']}"]
        if others:
            lines.append(f"{s['cluster']} joined: {', '.join(others)}")
    if doc.get("note"):
        lines += ["", f"note: {doc['note']}"]
    lines += [
        "",
        table(
            ["RULE", "SUBJECT", "VERDICT"],
            [[r["rule"], r["subject"], r["verdict"]] for r in doc["verdicts"]],
        ),
    ]
    for r in doc["verdicts"]:
        if r["verdict"] == "VIOLATED":
            lines += ["", f"{r['rule']} [{r['severity']}]: {r['summary']}"]
            lines += [f"    {k}: {v}" for k, v in sorted(r["evidence"].items())]
    return "\n".join(lines) + "\n"


def as_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str)
