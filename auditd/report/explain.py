"""`auditd rules` and `auditd explain`: the rules with their config and counts, and one
volume's pair view with every rule's verdict and evidence, from the stored state."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditd.config import Config
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.report.render import table
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Finding, Unknown
from auditd.rules.views import VolumeView
from auditd.store.load import load_objects
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
    from auditd.rules.builtin import BUILTIN_RULES

    out = []
    for rule in BUILTIN_RULES:
        active = engine.rules.get(rule.id)
        override = config.rules.get(rule.id)
        out.append(
            {
                "id": rule.id,
                "enabled": active is not None,
                "severity": (active or rule).severity,
                "for": str((active or rule).for_),
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


def explain_doc(session: Session, config: Config, target: str) -> dict[str, Any] | None:
    """The pair view of the volume named by pool/image or namespace/pvc, and every verdict."""
    inventory = Inventory()
    inventory.load(load_objects(session))
    engine = RuleEngine(config)
    everything = set(inventory.objects)
    verdicts = engine.evaluate(inventory, everything)
    view = _find(engine, inventory, target)
    if view is None:
        return None
    subjects = (
        {str(view.id)}
        | {str(k) for s in view.sides for k in (s.pvc, s.pv, s.vr) if k is not None}
        | {f"{s.cluster}/RbdPool/{view.id.pool}" for s in view.sides}
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
    return {
        "volume": str(view.id),
        "primary": view.primary_cluster,
        "in_transition": view.in_transition,
        "drpc_phases": list(view.drpc_phases),
        "sides": [
            {
                "cluster": s.cluster,
                "configured_role": s.configured_role,
                "pvc": _name(s.pvc),
                "pv": _name(s.pv),
                "vr": _name(s.vr),
                "vrg": _name(s.vrg),
                "image": s.image,
                "pool_probe": s.pool_probe,
                "blind": s.blind,
            }
            for s in view.sides
        ],
        "verdicts": rows,
    }


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
        + ("   (DR window: both sides demoted)" if doc["in_transition"] else ""),
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
