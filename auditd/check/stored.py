"""`--from-db`: what the running daemon holds, instead of a fresh look (for a runbook that must
not probe Ceph again). The edge that reads the history; judged by the same Seen as a look.

The verdicts are `auditd explain`'s: the same loader (facts, image records, open DR windows),
the same engine, at the same instant; a daemon that has stopped reporting makes every "ok"
unknown, as explain does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from auditd.check.judge import Seen, switching_now
from auditd.config import Config
from auditd.inventory.rbd_facts import RBD_POOL
from auditd.report.query import silent_since
from auditd.rules.model import UNKNOWN
from auditd.sources.kube.health import AUDIT_STREAM, NOT_CURRENT
from auditd.store.load import load_state


def assess_stored(session: Session, config: Config, now: datetime) -> tuple[Seen, tuple[str, ...]]:
    inventory, engine, _ = load_state(session, config)
    verdicts = engine.evaluate(inventory, set(inventory.objects), now)
    every = {
        vid: engine.correlator.view(inventory, vid) for vid in sorted(engine.correlator.volumes())
    }
    windows = frozenset(v for v, e in engine.windows.open.items() if e.switching)
    switching = windows | frozenset(vid for vid, v in every.items() if switching_now(v))
    unseen: list[str] = []
    silent = silent_since(session, now)
    if silent is not None:
        unseen.append(f"auditd has not reported since {silent.isoformat()}: nothing is known now")
        verdicts = {k: UNKNOWN if v is None else v for k, v in verdicts.items()}
    for key, known in sorted(inventory.objects.items()):
        if key.kind == AUDIT_STREAM and known.facts.get("state") in NOT_CURRENT:
            unseen.append(f"{key.cluster} {key.name}: {known.facts.get('state')} (as stored)")
        elif key.kind == RBD_POOL and known.facts.get("probe") != "ok":
            unseen.append(f"{key.cluster} pool {key.name}: probe {known.facts.get('probe')}")
    return Seen(inventory, every, switching, verdicts, engine.rules), tuple(unseen)
