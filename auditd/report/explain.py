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
from auditd.rules.model import Finding, Verdict
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
    """The pair view of the volume named by pool/image or namespace/pvc, or the application
    named by drpc/namespace/name, and every verdict, as the daemon judges at ``now``: the same
    loader (facts, image records, open DR windows) and the same engine."""
    inventory, engine, _ = load_state(session, config)
    verdicts = engine.evaluate(inventory, set(inventory.objects), now)
    silent = silent_since(session, now)
    kind, _, rest = target.partition("/")
    if kind == "drpc" and rest.count("/") == 1:
        return _application_doc(inventory, engine, verdicts, rest, now, silent)
    view = _find(engine, inventory, target)
    if view is None:
        return None
    subjects = (
        {str(view.id)}
        # Its own objects; what it shares with other volumes (a group, Ramen's VRG and DRPC)
        # is the application's: `explain drpc/NAMESPACE/NAME`, and check's "other".
        | {str(k) for s in view.sides for k in (s.pvc, s.pv, s.vr, s.unlinked_pvc) if k}
        | {str(ObjectKey(s.cluster, RBD_POOL, "", view.id.pool)) for s in view.sides}
    )
    rows = _verdict_rows(verdicts, subjects, silent)
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
                "unlinked_pvc": _name(s.unlinked_pvc),
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


def _verdict_rows(
    verdicts: dict[tuple[str, str], Verdict], subjects: set[str], silent: datetime | None
) -> list[dict[str, Any]]:
    """Every verdict on these subjects; none is "ok" while auditd is not reporting."""
    rows: list[dict[str, Any]] = []
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
            # Nobody watching: what was fine when auditd last looked is not known to be now.
            fine = verdict is None and silent is None
            rows.append(
                {
                    "rule": rule,
                    "subject": subject,
                    "verdict": "ok" if fine else "unknown",
                }
            )
    return rows


_DRPC_FACTS = ("action", "phase", "progression", "preferredCluster", "failoverCluster")


def _application_doc(
    inventory: Inventory,
    engine: RuleEngine,
    verdicts: dict[tuple[str, str], Verdict],
    name: str,
    now: datetime,
    silent: datetime | None,
) -> dict[str, Any] | None:
    """A Ramen application (its DRPC, on the hub or a DR cluster), its volumes and verdicts."""
    namespace, _, drpc = name.partition("/")
    keys = sorted(
        k
        for cluster in engine.config.clusters
        for k in inventory.keys_of(cluster.name, kinds.DRPC.kind)
        if (k.namespace, k.name) == (namespace, drpc)
    )
    if not keys:
        return None
    vids = sorted({v for k in keys for v in engine.correlator.joined_volumes(inventory, k)})
    views = [engine.correlator.view(inventory, v) for v in vids]
    # The application's objects and volumes, and what joined them (its VRG, its groups).
    subjects = (
        {str(k) for k in keys}
        | {str(v.id) for v in views}
        | {str(k) for v in views for side in v.sides for k in side.joined}
    )
    return {
        "application": f"{namespace}/{drpc}",
        "at": now.isoformat(),
        "drpcs": [
            {
                "cluster": k.cluster,
                **{f: inventory.objects[k].facts.get(f) for f in _DRPC_FACTS},
                "last_group_sync": inventory.objects[k].facts.get("lastGroupSyncTime"),
            }
            for k in keys
        ],
        "volumes": [_volume_row(v, now) for v in views],
        "verdicts": _verdict_rows(verdicts, subjects, silent),
        "note": (
            f"auditd has not reported since {silent.isoformat()}: the state shown is the last it "
            "saw, and nothing is known to be fine now"
            if silent is not None
            else None
        ),
    }


def _volume_row(view: VolumeView, now: datetime) -> dict[str, Any]:
    pvc = next((s.pvc for s in view.sides if s.pvc is not None), None)
    group = next((s.group for s in view.sides if s.group is not None), None)
    return {
        "volume": str(view.id),
        "pvc": _name(pvc),
        "primary": view.primary_cluster,
        "settled": view.settled,
        "synced_at": view.synced_at.isoformat() if view.synced_at else None,
        "lag_seconds": (now - view.synced_at).total_seconds() if view.synced_at else None,
        "group": _name(group),
    }


def application_text(doc: dict[str, Any]) -> str:
    drpcs = table(
        ["CLUSTER", "ACTION", "PHASE", "PROGRESSION", "LAST GROUP SYNC"],
        [
            [
                d["cluster"],
                *(d[f] or "-" for f in ("action", "phase", "progression", "last_group_sync")),
            ]
            for d in doc["drpcs"]
        ],
    )
    volumes = table(
        ["VOLUME", "PVC", "PRIMARY", "LAG", "GROUP"],
        [
            [v["volume"], v["pvc"] or "-", v["primary"] or "unknown", _lag(v), v["group"] or "-"]
            for v in doc["volumes"]
        ],
    )
    return _verdicts_text([f"application {doc['application']}", "", drpcs, "", volumes], doc)


def _lag(volume: dict[str, Any]) -> str:
    seconds = volume["lag_seconds"]
    return "unknown" if seconds is None else durations.human(timedelta(seconds=seconds))


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
    if "application" in doc:
        return application_text(doc)
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
        if s.get("unlinked_pvc"):
            lines.append(
                f"{s['cluster']} also holds PVC {s['unlinked_pvc']} of this claim, with no PV of"
                " its own there (deleted first, or not arrived): judged against this volume; a"
                f" switch away from {s['cluster']} is not over until it goes"
            )
    return _verdicts_text(lines, doc)


def _verdicts_text(lines: list[str], doc: dict[str, Any]) -> str:
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
