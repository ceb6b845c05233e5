"""The report's applications: each Ramen DRPC auditd knows, the volumes of its namespaces, its
last action and how long it took as Ramen and as storage measured it, and its RPO as Ramen and
as Ceph see it. Empty without Ramen."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditd.sources.kube.kinds import DRPC
from auditd.store.models import EpisodeRow, ObjectRow, TransitionRow

# Ramen's DRState: an action under way, and the phases it comes to rest in.
_MOVING = frozenset({"Initiating", "FailingOver", "Relocating"})
_AT_REST = frozenset({"Deployed", "FailedOver", "Relocated"})
# A volume's switch may begin a little before the DRPC says so (its VR asked first).
_EARLY = timedelta(minutes=1)

Image = tuple[str, str, str]  # cluster, pool, image


def applications(
    session: Session,
    since: datetime,
    until: datetime,
    volumes: Callable[[], tuple[Mapping[Image, str], Mapping[Image, float | None]]],
    namespace: str | None = None,
    clusters: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """``volumes``: (cluster, pool, image) -> namespace/pvc of the PVs known now, and the worst
    lag sampled in the window per image; read only when there is an application at all."""
    drpcs = session.scalars(
        select(ObjectRow).where(ObjectRow.kind == DRPC.kind).order_by(ObjectRow.namespace)
    ).all()
    if not drpcs:
        return []
    labels, worst_lags = volumes()
    t = TransitionRow
    phases = session.execute(
        select(t.cluster, t.namespace, t.name, t.new, t.observed_at)
        .where(t.kind == DRPC.kind, t.field == "phase", t.observed_at < until)
        .order_by(t.observed_at, t.id)
    ).all()
    out = []
    for d in drpcs:
        covers = _covers(d.namespace, d.facts)
        if namespace and namespace not in covers:
            continue
        images = sorted(
            {(p, i) for (c, p, i), claim in labels.items()
             if claim.split("/", 1)[0] in covers and (not clusters or c in clusters)}
        )  # fmt: skip
        if clusters and not images:
            continue  # another pair's application
        moves = [
            (new, at)
            for c, ns, n, new, at in phases
            if (c, ns, n) == (d.cluster, d.namespace, d.name)
        ]
        # Each action is one episode of the application, its volumes' switches under it.
        actions = [{**a, **_volume_episodes(session, images, a)} for a in _actions(moves, since)]
        lags = [
            lag for (_, p, i), lag in worst_lags.items() if (p, i) in images and lag is not None
        ]
        synced = d.facts.get("lastGroupSyncTime")
        ramen_rpo = (
            (until - datetime.fromisoformat(synced.replace("Z", "+00:00"))).total_seconds()
            if synced and d.facts.get("phase") in _AT_REST
            else None
        )
        out.append(
            {
                "application": f"{d.namespace}/{d.name}",
                "cluster": d.cluster,
                "phase": d.facts.get("phase"),
                "progression": d.facts.get("progression"),
                "volumes": len(images),
                "last_action": actions[-1] if actions else None,
                "actions": actions,
                "ramen_rpo_seconds": ramen_rpo,
                "ceph_worst_lag_seconds": max(lags, default=None),
            }
        )
    return out


def _covers(namespace: str, facts: Mapping[str, str | None]) -> tuple[str, ...]:
    """The namespaces of a DRPC's application (an ApplicationSet's DRPC lives elsewhere)."""
    join = DRPC.joins
    return join.covers(namespace, facts) if join is not None else (namespace,)


def _actions(moves: list[tuple[str | None, datetime]], since: datetime) -> list[dict[str, Any]]:
    """The actions that began in the window or were still under way in it, in order: when the
    DRPC entered a moving phase, and when it came to rest after it (None: still under way)."""
    found: list[tuple[str, datetime, datetime | None, str | None]] = []
    started: tuple[str, datetime] | None = None
    for phase, at in moves:
        if phase in _MOVING and started is None:
            started = (phase, at)
        elif phase in _AT_REST and started is not None:
            found.append((started[0], started[1], at, phase))
            started = None
    if started is not None:
        found.append((started[0], started[1], None, None))
    return [
        {
            "phase": phase,
            "done": rest,
            "started_at": begun.isoformat(),
            "ended_at": ended.isoformat() if ended else None,
            "ramen_seconds": (ended - begun).total_seconds() if ended else None,
        }
        for phase, begun, ended, rest in found
        if ended is None or ended >= since
    ]


def _volume_episodes(
    session: Session, images: list[tuple[str, str]], action: dict[str, Any]
) -> dict[str, Any]:
    """The switches of its volumes that began with the action (a volume's VR may ask a little
    before the DRPC says so), and the slowest of them: storage's RTO of the action."""
    if not images:
        return {"storage_rto_seconds": None, "volume_episodes": []}
    start = datetime.fromisoformat(action["started_at"]) - _EARLY
    end = datetime.fromisoformat(action["ended_at"]) if action["ended_at"] else None
    e = EpisodeRow
    scope = [e.started_at >= start] + ([e.started_at <= end] if end else [])
    rows = session.execute(
        select(e.pool, e.image, e.from_cluster, e.to_cluster, e.rto_seconds)
        .where(*scope)
        .order_by(e.started_at, e.id)
    ).all()
    wanted = set(images)
    mine = [r for r in rows if (r.pool, r.image) in wanted]
    rtos = [r.rto_seconds for r in mine if r.rto_seconds is not None]
    return {
        "storage_rto_seconds": max(rtos, default=None),
        "volume_episodes": [
            {
                "volume": f"{r.pool}/{r.image}",
                "from": r.from_cluster,
                "to": r.to_cluster,
                "rto_seconds": r.rto_seconds,
            }
            for r in mine
        ],
    }
