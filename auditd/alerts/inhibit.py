"""Inhibition, as in Alertmanager: a firing parent alert holds back the child alerts it explains.

* `audit-blind-spot` on a cluster holds back every other alert about that cluster: while auditd
  cannot see it, child alerts would be guesses. Not `old-primary-not-fenced`: it is about that
  cluster because it cannot be seen, and it comes from what the survivor shows.
* `pool-mirroring-unhealthy` (rbd-mirror down, pool in error) holds back the per-volume storage
  alerts of that pair: one pool-level alert instead of one per image.

Children that were already announced still get their "resolved" (the outbox only holds back
the resolve of a child whose firing was itself held back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VOLUME_STORAGE_RULES = frozenset(
    {
        "secondary-not-replaying",
        "primary-not-stopped",
        "image-missing-on-peer",
        "rpo-exceeded",
        "lag-disagreement",
    }
)
PARENT_RULES = frozenset({"audit-blind-spot", "pool-mirroring-unhealthy"})
# Findings about a cluster that hold precisely while it is blind: never held back by that.
ABOUT_BLINDNESS = frozenset({"old-primary-not-fenced"})


@dataclass(frozen=True)
class Parent:
    rule: str
    subject: str
    cluster: str | None
    pair: str | None


def inhibited_by(parents: Iterable[Parent], labels: Mapping[str, str | None]) -> Parent | None:
    rule = labels.get("rule")
    for p in parents:
        if p.rule == rule:
            continue
        if (
            p.rule == "audit-blind-spot"
            and p.cluster
            and labels.get("cluster") == p.cluster
            and rule not in ABOUT_BLINDNESS
        ):
            return p
        if (
            p.rule == "pool-mirroring-unhealthy"
            and rule in VOLUME_STORAGE_RULES
            and p.pair
            and labels.get("pair") == p.pair
        ):
            return p
    return None
