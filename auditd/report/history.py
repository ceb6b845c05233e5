"""`auditd history VOLUME`: one volume's timeline on both clusters.

A volume is known by its PVC (namespace/name) or its RBD image (pool/image). The history links
them through what was recorded, not through what exists now, so a deleted PVC or a failed-over
volume still has its whole story: PVC -> volumeName -> PV -> imageName <- RbdImage, and the
VolumeReplication whose dataSource is the PVC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, tuple_
from sqlalchemy.orm import Session

from auditd.inventory.rbd_facts import RBD_IMAGE
from auditd.report.query import (
    alert_delivery,
    episode_doc,
    transition_doc,
    violation_doc,
)
from auditd.report.render import table
from auditd.report.sections import short_time
from auditd.sources.kube import kinds
from auditd.store.models import EpisodeRow, ObjectRow, TransitionRow, ViolationRow

PVC, PV, VR = kinds.PVC.kind, kinds.PV.kind, kinds.VR.kind


@dataclass
class Volume:
    """Every object that has been part of the volume, by (kind, namespace, name)."""

    claims: set[tuple[str, str]]  # (namespace, name)
    pvs: set[str]
    vrs: set[tuple[str, str]]
    images: set[tuple[str, str]]  # (pool, image)

    def keys(self) -> set[tuple[str, str, str]]:
        return (
            {(PVC, ns, n) for ns, n in self.claims}
            | {(PV, "", n) for n in self.pvs}
            | {(VR, ns, n) for ns, n in self.vrs}
            | {(RBD_IMAGE, pool, img) for pool, img in self.images}
        )


def _values(session: Session, kind: str, field: str, where: Any) -> set[tuple[str, str, str]]:
    """(namespace, name, value) of every value this field ever had, for objects matching."""
    t = TransitionRow
    return {
        (ns, name, str(new))
        for ns, name, new in session.execute(
            select(t.namespace, t.name, t.new)
            .where(t.kind == kind, t.field == field, t.new.is_not(None), where)
            .distinct()
        )
    }


def resolve(session: Session, ref: str) -> Volume | None:
    """The volume named by ``namespace/pvc`` or ``pool/image`` (a ``pair/`` prefix is ignored)."""
    parts = ref.strip("/").split("/")
    if len(parts) not in (2, 3):
        return None
    first, second = parts[-2], parts[-1]
    t = TransitionRow
    vol = Volume(set(), set(), set(), set())
    seen = session.scalar(
        select(t.id).where(t.kind == PVC, t.namespace == first, t.name == second).limit(1)
    )
    if seen is not None:
        vol.claims.add((first, second))
    else:
        # pool/image: the PVs that pointed at the image, and through them the claims.
        if session.scalar(
            select(t.id).where(t.kind == RBD_IMAGE, t.namespace == first, t.name == second).limit(1)
        ) is None and not _values(session, PV, "imageName", t.new == second):
            return None
        vol.images.add((first, second))
        vol.pvs |= {n for _, n, _ in _values(session, PV, "imageName", t.new == second)}
        for _, _, claim in _values(session, PV, "claimRef", t.name.in_(vol.pvs)):
            ns, _, name = claim.partition("/")
            vol.claims.add((ns, name))
    for ns, name in list(vol.claims):
        pvs = _values(session, PVC, "volumeName", and_(t.namespace == ns, t.name == name))
        vol.pvs |= {v for _, _, v in pvs}
        vrs = _values(session, VR, "dataSource", and_(t.namespace == ns, t.new == name))
        vol.vrs |= {(vns, vname) for vns, vname, _ in vrs}
    if vol.pvs:
        images = _values(session, PV, "imageName", t.name.in_(vol.pvs))
        pools = {n: p for _, n, p in _values(session, PV, "pool", t.name.in_(vol.pvs))}
        vol.images |= {(pools.get(n, "?"), img) for _, n, img in images}
    return vol


def joined_now(session: Session, vol: Volume) -> list[str]:
    """What protects or groups the volume's claims now, as the kind catalogue joins it: a
    consistency group listing the claim, Ramen's VRG and DRPC covering its namespace (a DRPC
    on the hub too), any kind added with a Join. Its VRs are listed on their own."""
    if not vol.claims:
        return []
    joins = {k.kind: k.joins for k in kinds.ALL_KINDS if k.joins and k.kind != VR}
    namespaces = {ns for ns, _ in vol.claims}
    out = set()
    for row in session.scalars(select(ObjectRow).where(ObjectRow.kind.in_(sorted(joins)))):
        join, facts = joins[row.kind], row.facts or {}
        if join.by == "claim":
            names = set(join.claims(facts))
            hit = any(ns == row.namespace and n in names for ns, n in vol.claims)
        elif join.by == "namespace":
            hit = bool(namespaces & set(join.covers(row.namespace, facts)))
        else:
            hit = False  # a whole-cluster object (a DRCluster) is no one volume's
        if hit:
            ns = f"{row.namespace}/" if row.namespace else ""
            out.add(f"{row.cluster}/{row.kind}/{ns}{row.name}")
    return sorted(out)


def load_history(
    session: Session, vol: Volume, since: datetime | None, until: datetime | None, limit: int
) -> dict[str, Any]:
    t = TransitionRow
    keys = sorted(vol.keys())
    scope: list[ColumnElement[bool]] = [tuple_(t.kind, t.namespace, t.name).in_(keys)]
    if since is not None:
        scope.append(t.observed_at >= since)
    if until is not None:
        scope.append(t.observed_at < until)
    rows = session.scalars(
        select(t).where(*scope).order_by(t.observed_at.desc(), t.id.desc()).limit(limit)
    ).all()
    subjects = [ViolationRow.subject.like(f"%/{pool}/{img}") for pool, img in vol.images]
    subjects += [ViolationRow.subject.like(f"%/{k}/{ns}/{n}") for k, ns, n in keys if ns]
    subjects += [ViolationRow.subject.like(f"%/{PV}/{n}") for n in vol.pvs]
    incidents = (
        session.scalars(
            select(ViolationRow)
            .where(or_(*subjects), ViolationRow.state != "inactive")
            .order_by(ViolationRow.first_seen)
        ).all()
        if subjects
        else []
    )
    delivery = alert_delivery(session, [v.id for v in incidents])
    episodes = session.scalars(
        select(EpisodeRow)
        .where(tuple_(EpisodeRow.pool, EpisodeRow.image).in_(sorted(vol.images)))
        .order_by(EpisodeRow.started_at)
    ).all() if vol.images else []  # fmt: skip
    return {
        "volume": {
            "claims": [f"{ns}/{n}" for ns, n in sorted(vol.claims)],
            "pvs": sorted(vol.pvs),
            "volume_replications": [f"{ns}/{n}" for ns, n in sorted(vol.vrs)],
            "images": [f"{p}/{i}" for p, i in sorted(vol.images)],
            "joined": joined_now(session, vol),
        },
        "transitions": [transition_doc(r) for r in reversed(rows)],
        "incidents": [violation_doc(v, delivery.get(v.id, [])) for v in incidents],
        "episodes": [episode_doc(e) for e in episodes],
    }


def history_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2)


def history_text(doc: dict[str, Any]) -> str:
    v = doc["volume"]
    out = [
        "volume: "
        + "; ".join(
            f"{label} {', '.join(v[k]) or '-'}"
            for label, k in (
                ("PVC", "claims"),
                ("PV", "pvs"),
                ("VR", "volume_replications"),
                ("image", "images"),
            )
        ),
    ]
    if v.get("joined"):
        out.append("protected or grouped by (now): " + ", ".join(v["joined"]))
    out += ["", "TIMELINE (both clusters; source: list, watch, relist, resync, probe, health)"]
    rows = [
        [
            short_time(t["observed_at"]),
            t["cluster"],
            f"{t['kind']} {t['namespace'] + '/' if t['namespace'] else ''}{t['name']}",
            t["field"],
            f"{t['old'] if t['old'] is not None else '-'} -> {t['new'] if t['new'] is not None else '-'}",
            t["source"] + (" (late)" if t["late"] else ""),
        ]
        for t in doc["transitions"]
    ]
    out.append(
        table(["OBSERVED", "CLUSTER", "OBJECT", "FIELD", "OLD -> NEW", "SOURCE"], rows)
        if rows
        else "(none)"
    )
    out += ["", "INCIDENTS"]
    out.append(
        table(
            ["STATE", "SEVERITY", "RULE", "FIRST SEEN", "RESOLVED"],
            [
                [
                    i["state"],
                    i["severity"],
                    i["rule"],
                    short_time(i["first_seen"]),
                    short_time(i["resolved_at"]),
                ]
                for i in doc["incidents"]
            ],
        )
        if doc["incidents"]
        else "(none)"
    )
    if doc["episodes"]:
        out += ["", "FAILOVERS AND RELOCATES"]
        out.append(
            table(
                ["TRIGGER", "FROM -> TO", "STARTED", "RTO"],
                [
                    [
                        e["trigger"],
                        f"{e['from_cluster']} -> {e['to_cluster']}",
                        short_time(e["started_at"]),
                        f"{e['rto_seconds']:.0f}s" if e["rto_seconds"] is not None else "-",
                    ]
                    for e in doc["episodes"]
                ],
            )
        )
    return "\n".join(out) + "\n"
