"""Apply the configured rules to the keys a change touched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from auditd.config import Config, ConfigError
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.builtin import BUILTIN_RULES, LAG_RULES
from auditd.rules.model import Finding, Rule, RuleContext, Verdict
from auditd.rules.views import Correlator, VolumeId
from auditd.rules.windows import WindowTracker
from auditd.sources.rbd.probe import ProbeResult


def configured_rules(config: Config) -> dict[str, Rule]:
    """The built-in rules with the config's overrides; unknown rule ids are config errors."""
    known = {r.id: r for r in BUILTIN_RULES}
    for rule_id in config.rules:
        if rule_id not in known:
            raise ConfigError(
                f"rules.{rule_id}", f"unknown rule (known: {', '.join(sorted(known))})"
            )
    out: dict[str, Rule] = {}
    for rule in BUILTIN_RULES:
        override = config.rules.get(rule.id)
        if override is not None:
            if not override.enabled:
                continue
            rule = replace(
                rule,
                severity=override.severity or rule.severity,
                for_=override.for_ if override.for_ is not None else rule.for_,
            )
        out[rule.id] = rule
    return out


class RuleEngine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules = configured_rules(config)
        self.correlator = Correlator(config)
        self.windows = WindowTracker()

    def record_probe(self, result: ProbeResult) -> set[VolumeId]:
        """Note each image's last synced snapshot; returns the volumes whose lag was refreshed
        (lag grows with time, so they are re-evaluated every probe cycle)."""
        out: set[VolumeId] = set()
        if result.status is None:
            return out
        for image in result.status.images:
            ts = (image.replay_info() or {}).get("local_snapshot_timestamp")
            if isinstance(ts, int | float):
                vid = self.correlator.record_sync(
                    result.cluster, result.pool, image.name, datetime.fromtimestamp(ts, UTC)
                )
                if vid is not None:
                    out.add(vid)
        return out

    def evaluate(
        self,
        inventory: Inventory,
        touched: Iterable[ObjectKey],
        now: datetime | None = None,
        also: Iterable[VolumeId] = (),
        lag_only: Iterable[VolumeId] = (),
    ) -> dict[tuple[str, str], Verdict]:
        """Verdicts for every subject the touched keys (and ``also`` volumes) affect, only those.

        ``lag_only`` volumes only had their lag refreshed by a probe (nothing else about them
        changed): only the lag rules look at them. At 10,000 volumes that is most of every
        probe cycle, and a fraction of the cost of all rules."""
        # Deterministic order, whatever order the events came in.
        keys = sorted(touched)
        volumes = sorted(self.correlator.update(inventory, keys) | set(also))
        now = now or datetime.now(UTC)
        verdicts = self._evaluate(inventory, keys, volumes, now, self.rules.values())
        lagging = sorted(set(lag_only) - set(volumes))
        if lagging:
            lag_rules = [r for r in self.rules.values() if r.id in LAG_RULES]
            verdicts.update(self._evaluate(inventory, [], lagging, now, lag_rules, observe=False))
        return verdicts

    def _evaluate(
        self,
        inventory: Inventory,
        keys: list[ObjectKey],
        volumes: list[VolumeId],
        now: datetime,
        rules: Iterable[Rule],
        observe: bool = True,
    ) -> dict[tuple[str, str], Verdict]:
        views = tuple(self.correlator.view(inventory, v) for v in volumes)
        windows = {}
        for view in views:
            # A lag refresh changes no state a window follows: look the window up, no more.
            episode = (
                self.windows.observe(view, inventory, now)
                if observe
                else self.windows.open.get(view.id)
            )
            if episode is not None:
                windows[view.id] = episode
        ctx = RuleContext(inventory, self.config, views, now, windows)
        verdicts: dict[tuple[str, str], Verdict] = {}
        for rule in rules:
            scope = self._scope(rule.id)
            for subject, verdict in rule.evaluate(ctx, keys).items():
                if isinstance(verdict, Finding):
                    ns = verdict.evidence.get("namespace")
                    override = self.config.rules.get(rule.id)
                    if scope and ns is not None and ns not in scope:
                        verdict = None  # out of this rule's configured namespace scope
                    elif override is not None and override.severity is not None:
                        verdict = replace(verdict, severity=override.severity)
                verdicts[(rule.id, subject)] = verdict
        return verdicts

    def open_windows(self) -> set[VolumeId]:
        """Volumes in a DR window: timers re-evaluate them (a window can overrun its deadline)."""
        return set(self.windows.open)

    def _scope(self, rule_id: str) -> frozenset[str]:
        override = self.config.rules.get(rule_id)
        return frozenset(override.namespaces) if override else frozenset()
