"""`auditd status`: stream health per cluster and kind, and the outbox, as the daemon last wrote them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditd import durations
from auditd.inventory.inventory import QUARANTINED
from auditd.report.query import HEARTBEAT_STALE, iso_utc, parse_iso
from auditd.report.render import table
from auditd.store.models import (
    LeaderRow,
    NotificationRow,
    ObjectRow,
    ProbeHealthRow,
    StreamHealthRow,
)

# Three missed health samples: the daemon is gone or stuck, and what it last said is stale.
STALE_AFTER = HEARTBEAT_STALE
# The leader renews every 2 s (daemon/leader.py); a few missed renewals: nobody leads.
LEADER_STALE = timedelta(seconds=15)


def load_status(
    session: Session, now: datetime, stale_probe: timedelta = timedelta(minutes=5)
) -> dict[str, Any]:
    """``stale_probe``: how long without a probe attempt makes a pool's last state stale (the
    config's probe.interval x probe.stale_after_intervals)."""
    rows = session.scalars(
        select(StreamHealthRow).order_by(StreamHealthRow.cluster, StreamHealthRow.kind)
    ).all()
    reported = max((r.reported_at for r in rows), default=None)
    reporting = reported is not None and now - reported <= STALE_AFTER
    streams = [
        {
            "cluster": r.cluster,
            "kind": r.kind,
            # Unknown is never healthy: a stale row says nothing about now.
            "state": r.state if reporting else "unknown",
            "connected": r.connected if reporting else None,
            "synced": r.synced,
            "last_event_at": iso_utc(r.last_event_at),
            "last_list_at": iso_utc(r.last_list_at),
            "disconnected_since": iso_utc(r.disconnected_since),
            "lists": r.lists,
            "relists": r.relists,
            "errors": r.errors,
            "bad_events": r.bad_events,
            "last_error": r.last_error,
            "resource_version": r.resource_version,
        }
        for r in rows
    ]
    probes = [
        {
            "cluster": r.cluster,
            "pool": r.pool,
            # A probe that has not succeeded for a while is stale, whatever it last said.
            "state": (
                "unknown"
                if not reporting
                else "stale"
                if r.state == "ok" and now - r.last_attempt_at > stale_probe
                else r.state
            ),
            "last_attempt_at": iso_utc(r.last_attempt_at),
            "last_success_at": iso_utc(r.last_success_at),
            "duration_ms": r.duration_ms,
            "consecutive_failures": r.consecutive_failures,
            "failures": r.failures,
            "last_error": r.last_error,
            "images": r.images,
        }
        for r in session.scalars(
            select(ProbeHealthRow).order_by(ProbeHealthRow.cluster, ProbeHealthRow.pool)
        )
    ]
    quarantined = [
        {
            "cluster": r.cluster,
            "kind": r.facts.get("kind"),
            "namespace": r.facts.get("namespace"),
            "name": r.facts.get("name"),
            "reason": r.facts.get("reason"),
            "resource_version": r.facts.get("resource_version"),
            "since": iso_utc(r.updated_at),
        }
        for r in session.scalars(
            select(ObjectRow)
            .where(ObjectRow.kind == QUARANTINED)
            .order_by(ObjectRow.cluster, ObjectRow.name)
        )
    ]
    # "all": the record of auditd's single election before per-pair leadership.
    leaders = [
        (ld, now - ld.renewed_at <= LEADER_STALE)
        for ld in session.scalars(
            select(LeaderRow).where(LeaderRow.scope != "all").order_by(LeaderRow.scope)
        )
    ]
    outbox = dict(
        session.execute(
            select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
        ).all()
    )
    healthy = (
        reporting
        and all(s["state"] in ("ok", "absent") for s in streams)
        and all(p["state"] == "ok" for p in probes)
        and not quarantined
        and all(current for _, current in leaders)
    )
    return {
        "schema_version": 1,
        "now": iso_utc(now),
        "reporting": reporting,
        "last_report_at": iso_utc(reported),
        "healthy": healthy,
        "streams": streams,
        "probes": probes,
        # Objects auditd could not take in: their last good state is kept, their current one
        # is unknown (so the whole is not "healthy").
        "quarantined": quarantined,
        # Replicas on PostgreSQL: who leads each scope (a pair, or "auditd": alert delivery),
        # and whether it still renews (empty on SQLite: one process does everything).
        "leaders": [
            {
                "scope": ld.scope,
                "holder": ld.holder,
                "since": iso_utc(ld.acquired_at),
                "renewed_at": iso_utc(ld.renewed_at),
                "current": current,
            }
            for ld, current in leaders
        ],
        "outbox": {
            "pending": outbox.get("pending", 0) + outbox.get("sending", 0),
            "sent": outbox.get("sent", 0),
            "dead": outbox.get("dead", 0),
            "silenced": outbox.get("silenced", 0),
            "inhibited": outbox.get("inhibited", 0),
        },
    }


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    return durations.human(now - parse_iso(iso)) + " ago"


def status_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2)


def status_table(doc: dict[str, Any], now: datetime) -> str:
    if doc["last_report_at"] is None:
        head = "auditd has never reported: no daemon has run against this database"
    elif doc["reporting"]:
        head = f"auditd is reporting (last report {_ago(doc['last_report_at'], now)})"
    else:
        head = (
            f"auditd is NOT reporting (last report {_ago(doc['last_report_at'], now)}): "
            "every stream state is UNKNOWN"
        )
    rows = [
        [
            s["cluster"],
            s["kind"],
            s["state"],
            {True: "yes", False: "no", None: "?"}[s["connected"]],
            _ago(s["last_event_at"], now),
            str(s["lists"]),
            str(s["relists"]),
            str(s["errors"]),
            str(s["bad_events"]),
            (s["last_error"] or "-")[:60],
        ]
        for s in doc["streams"]
    ]
    out = [head, ""]
    if rows:
        out.append(
            table(
                [
                    "CLUSTER",
                    "KIND",
                    "STATE",
                    "CONN",
                    "LAST EVENT",
                    "LISTS",
                    "RELISTS",
                    "ERRORS",
                    "BAD",
                    "LAST ERROR",
                ],
                rows,
            )
        )
    if doc["probes"]:
        out += [
            "",
            table(
                ["CLUSTER", "POOL", "PROBE", "LAST OK", "TOOK", "IMAGES", "FAILURES", "LAST ERROR"],
                [
                    [
                        p["cluster"],
                        p["pool"],
                        p["state"],
                        _ago(p["last_success_at"], now),
                        f"{p['duration_ms']} ms",
                        "-" if p["images"] is None else str(p["images"]),
                        f"{p['consecutive_failures']} now, {p['failures']} total",
                        (p["last_error"] or "-")[:60],
                    ]
                    for p in doc["probes"]
                ],
            ),
        ]
    if doc["quarantined"]:
        out += [
            "",
            f"{len(doc['quarantined'])} object(s) QUARANTINED (could not be taken in; their "
            "current state is unknown):",
            table(
                ["CLUSTER", "KIND", "OBJECT", "SINCE", "REASON"],
                [
                    [
                        q["cluster"],
                        q["kind"] or "-",
                        f"{q['namespace']}/{q['name']}" if q["namespace"] else q["name"] or "-",
                        _ago(q["since"], now),
                        (q["reason"] or "-")[:80],
                    ]
                    for q in doc["quarantined"]
                ],
            ),
        ]
    if doc["leaders"]:
        out += [
            "",
            "leaders (replicas share the pairs; each scope has one writer):",
            table(
                ["SCOPE", "HOLDER", "SINCE", "RENEWED", "STATE"],
                [
                    [
                        ld["scope"],
                        ld["holder"],
                        _ago(ld["since"], now),
                        _ago(ld["renewed_at"], now),
                        "leads" if ld["current"] else "NOT RENEWED: nobody leads",
                    ]
                    for ld in doc["leaders"]
                ],
            ),
        ]
    ob = doc["outbox"]
    out += [
        "",
        f"outbox: {ob['pending']} pending, {ob['sent']} sent, {ob['dead']} dead-lettered, "
        f"{ob['silenced']} silenced, {ob['inhibited']} inhibited",
    ]
    return "\n".join(out) + "\n"
