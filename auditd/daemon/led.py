"""What this writer leads, as a value: which scopes it writes, and what that makes of a batch.

Pure: the ingest writer keeps one ``Led`` and replaces it when leadership changes
(daemon/leader.py decides; daemon/scopes.py says what a scope is). The writer writes the items
of the scopes it leads, follows the others in memory, and judges only violations it owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from auditd.daemon.items import Downtime, HealthReport, Item, Tick
from auditd.daemon.scopes import Scopes


@dataclass(frozen=True)
class Led:
    scopes: Scopes
    led: frozenset[str]

    @property
    def everything(self) -> bool:
        """Every scope (one process, or SQLite): nothing to split or filter."""
        return len(self.led) == len(self.scopes.all)

    def mine(self, pair: str | None, cluster: str | None) -> bool:
        """A violation of this pair (or cluster) is this writer's to judge and write."""
        return self.everything or self.scopes.of_violation(pair, cluster) in self.led

    def followed_clusters(self) -> set[str]:
        """The clusters another replica writes: kept in memory as watched, for a takeover."""
        return self.scopes.clusters_of(set(self.scopes.all) - self.led)

    def split(self, batch: Sequence[Item]) -> tuple[list[Item], list[Item]]:
        """The items of the scopes led (to write), and the rest (to follow). A health report
        or a downtime covering several clusters is cut along the scopes; a tick is written by
        a writer that leads anything."""
        if self.everything:
            return list(batch), []
        scope_of = self.scopes.of_cluster
        mine: list[Item] = []
        theirs: list[Item] = []
        for item in batch:
            if isinstance(item, Tick):
                (mine if self.led else theirs).append(item)
            elif isinstance(item, HealthReport):
                ours = [h for h in item.streams if scope_of(h["cluster"]) in self.led]
                if ours:
                    mine.append(replace(item, streams=ours))
            elif isinstance(item, Downtime):
                clusters = [c for c in item.clusters if scope_of(c) in self.led]
                if clusters:
                    mine.append(replace(item, clusters=clusters))
            else:
                (mine if scope_of(item.cluster) in self.led else theirs).append(item)
        return mine, theirs

    def with_(self, scopes: frozenset[str]) -> Led:
        return replace(self, led=self.led | scopes)

    def without(self, scopes: frozenset[str]) -> Led:
        return replace(self, led=self.led - scopes)
