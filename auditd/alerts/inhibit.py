"""Inhibition, as Alertmanager's ``inhibit_rules``: while a source alert fires, the target
alerts with the same values of the ``equal`` labels are held back (recorded "inhibited", never
sent). The rules are data (``[[alerts.inhibit_rules]]`` in the config); these are the defaults:

* `audit-blind-spot` on a cluster holds back every other alert about that cluster: while auditd
  cannot see it, child alerts would be guesses. Not `old-primary-not-fenced`: it is about that
  cluster because it cannot be seen, and it comes from what the survivor shows.
* `pool-mirroring-unhealthy` (rbd-mirror down, pool in error) holds back the per-volume storage
  alerts of that pair: one pool-level alert instead of one per image.

Children that were already announced still get their "resolved" (the outbox only holds back
the resolve of a child whose firing was itself held back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from auditd import matchers
from auditd.matchers import Matcher

Labels = Mapping[str, str | None]

# As config data: the config's default, and what config.example.toml shows (a test holds them).
DEFAULT_RULES: tuple[dict[str, list[str]], ...] = (
    {
        "source_matchers": ['rule="audit-blind-spot"'],
        "target_matchers": ['rule!~"audit-blind-spot|old-primary-not-fenced"'],
        "equal": ["cluster"],
    },
    {
        "source_matchers": ['rule="pool-mirroring-unhealthy"'],
        "target_matchers": [
            'rule=~"secondary-not-replaying|primary-not-stopped|image-missing-on-peer'
            '|rpo-exceeded|lag-disagreement"'
        ],
        "equal": ["pair"],
    },
)


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def of(
        cls,
        source: Iterable[str],
        target: Iterable[str],
        equal: Iterable[str],
        labels: Sequence[str],
    ) -> InhibitRule:
        return cls(
            tuple(matchers.parse(m, labels) for m in source),
            tuple(matchers.parse(m, labels) for m in target),
            tuple(equal),
        )

    def may_source(self, rule: str) -> bool:
        """Alerts of this rule could be sources (their other labels decide): which firing
        violations are worth loading at all."""
        return all(m.matches({"rule": rule}) for m in self.source if m.label == "rule")

    def key(self, labels: Labels) -> tuple[str | None, ...]:
        return tuple(labels.get(label) or None for label in self.equal)

    def inhibits(self, source: Labels, target: Labels) -> bool:
        if not (_all(self.target, target) and _all(self.source, source)):
            return False
        # Alertmanager counts two missing labels as equal; not here: a source with no cluster
        # would hold back every alert that has none.
        if not all(
            source.get(label) and source.get(label) == target.get(label) for label in self.equal
        ):
            return False
        # As Alertmanager: an alert that could itself be a source is not held back by an equal
        # source that could be a target too (two alerts never silence each other).
        return not (_all(self.source, target) and _all(self.target, source))


def _all(ms: Iterable[Matcher], labels: Labels) -> bool:
    return all(m.matches(labels) for m in ms)


class Inhibitor:
    """The firing alerts that may hold others back, filed per rule under their ``equal``
    labels: asking about one alert costs a lookup per rule, not a scan of every firing one
    (a storm routes thousands of alerts past thousands of firing parents)."""

    def __init__(self, rules: Iterable[InhibitRule], parents: Iterable[Labels]) -> None:
        self._rules: list[tuple[InhibitRule, dict[tuple[str | None, ...], list[Labels]]]] = []
        parents = tuple(parents)
        for rule in rules:
            filed: dict[tuple[str | None, ...], list[Labels]] = {}
            for parent in parents:
                key = rule.key(parent)
                if all(key) and _all(rule.source, parent):
                    filed.setdefault(key, []).append(parent)
            self._rules.append((rule, filed))

    def held_by(self, labels: Labels) -> Labels | None:
        """The firing alert (its labels) that holds this one back, or None."""
        for rule, filed in self._rules:
            for parent in filed.get(rule.key(labels), ()):
                if not _same(parent, labels) and rule.inhibits(parent, labels):
                    return parent
        return None


def _same(a: Labels, b: Labels) -> bool:
    """One alert: a violation is its rule and subject."""
    return a.get("rule") == b.get("rule") and a.get("subject") == b.get("subject")
