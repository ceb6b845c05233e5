"""What one leader is responsible for: a DR pair (with its hub, if only it has that hub), an
unpaired cluster, or auditd's own chores.

Replicas on one PostgreSQL history split the work by scope (daemon/leader.py): each DR pair is
led by one replica, which writes its history and evaluates its rules, so N replicas spread N
pairs. A cluster belongs to at most one pair (config), so every cluster, and everything seen
on it, has exactly one scope. What belongs to no cluster (delivering the outbox, pruning,
violations about auditd itself) is the ``GLOBAL`` scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from auditd.config import Config

GLOBAL = "auditd"


@dataclass(frozen=True)
class Scopes:
    by_cluster: dict[str, str]

    @classmethod
    def of(cls, config: Config) -> Scopes:
        by_cluster = {c.name: f"cluster/{c.name}" for c in config.clusters}
        for pair in config.pairs:
            for name in pair.clusters:
                by_cluster[name] = f"pair/{pair.name}"
        # A hub of one pair is that pair's: its DRPC actions are judged with the pair's volumes
        # by the pair's leader. A hub of several pairs is a scope of its own; each pair's leader
        # follows it in memory (what it sees is judged with the pair's next change).
        for c in config.clusters:
            served = [p.name for p in config.pairs if p.hub == c.name]
            if len(served) == 1:
                by_cluster[c.name] = f"pair/{served[0]}"
        return cls(by_cluster)

    # Computed once: the ingest writer asks for them on every batch and verdict.
    @cached_property
    def units(self) -> list[str]:
        """The scopes replicas spread among themselves (every one but ``GLOBAL``)."""
        return sorted(set(self.by_cluster.values()))

    @cached_property
    def all(self) -> list[str]:
        return [*self.units, GLOBAL]

    def of_cluster(self, cluster: str | None) -> str:
        if cluster is None:
            return GLOBAL
        return self.by_cluster.get(cluster, GLOBAL)

    def of_violation(self, pair: str | None, cluster: str | None) -> str:
        if pair is not None:
            return f"pair/{pair}"
        return self.of_cluster(cluster)

    def clusters_of(self, scopes: Iterable[str]) -> set[str]:
        wanted = set(scopes)
        return {c for c, s in self.by_cluster.items() if s in wanted}
