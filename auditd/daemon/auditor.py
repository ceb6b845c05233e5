"""The auditor: one batch of what was seen in, one ``Commit`` out.

inventory -> views -> rules -> lifecycle -> episodes, with no I/O: the ingest writer hands it a
batch, writes the ``Commit`` it returns in one transaction, and only then tells it the commit
stood (``accept``). What it holds is its memory of the clusters and of Ceph (the inventory, the
rule engine's indexes and windows, the open violations, the probe book); a batch that does not
commit is undone by reloading that memory from the history (``reload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditd.daemon.items import Downtime, HealthReport, Item, Tick
from auditd.daemon.led import Led
from auditd.inventory.inventory import EXISTS, Checkpoint, Delta, Inventory
from auditd.inventory.probe_book import ProbeBook
from auditd.rules.engine import RuleEngine
from auditd.rules.lifecycle import Active, Change, due, moves, step
from auditd.rules.model import Finding, Verdict
from auditd.rules.views import PV, PVC, VR, VolumeId
from auditd.rules.windows import Episode
from auditd.sources.kube.events import KubeEvent, SnapshotEnd
from auditd.sources.kube.health import health_rows
from auditd.sources.rbd.probe import ProbeResult

ViolationKey = tuple[str, str]  # rule, subject

# The kinds whose appearance is judged against storage evidence newer than it.
APPEARING = frozenset({PVC, PV, VR})


@dataclass
class Commit:
    """What one batch changes in the history, to be written in one transaction (dated
    ``now``, when the batch was observed), and what the writer does once it stood."""

    now: datetime
    delta: Delta
    changes: list[Change] = field(default_factory=list)
    stream_rows: list[dict[str, Any]] = field(default_factory=list)
    probe_rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    # For /metrics, once committed: the probes taken in and each image's lag they gave.
    probes: list[ProbeResult] = field(default_factory=list)
    lags: list[tuple[str, str, str, float | None]] = field(default_factory=list)
    # Probes the rules want now (cluster, pool): asked for whether or not anything is written.
    wanted: set[tuple[str, str]] = field(default_factory=set)
    listed: bool = False  # a list completed: the inventory is mostly long-lived now

    @property
    def empty(self) -> bool:
        return not (
            self.delta or self.changes or self.stream_rows or self.probe_rows or self.episodes
        )


class Auditor:
    def __init__(
        self,
        inventory: Inventory,
        rules: RuleEngine,
        active: dict[ViolationKey, Active],
        led: Led,
    ) -> None:
        self.inventory = inventory
        self.rules = rules
        self.active = active
        self.probe_book = ProbeBook(rules.config.probe.sample_every)
        # What this writer leads: whose items it judges and writes (the writer sets it).
        self.led = led

    def step(self, batch: Sequence[Item], now: datetime) -> Commit:
        """Take a batch into memory; what it changes in the history is the Commit."""
        # Whatever a step before this one staged was never accepted: its write failed.
        self.probe_book.discard()
        commit = Commit(now, Delta())
        delta = commit.delta
        timers = False
        health: HealthReport | None = None
        lag_refreshed: set[VolumeId] = set()
        config = self.rules.config
        for item in batch:
            if isinstance(item, Tick):
                timers = True
            elif isinstance(item, ProbeResult):
                self.inventory.apply_probe(item, config.probe.record_stale_after, delta)
                lag_refreshed |= self.rules.record_probe(item)
                commit.probes.append(item)
                commit.probe_rows.append(self.probe_book.health_row(item))
                item_lags = self.probe_book.lags(item, self.inventory)
                commit.samples.extend(self.probe_book.samples(item, item_lags))
                commit.lags.extend(item_lags)
            elif isinstance(item, Downtime):
                self.inventory.apply_downtime(
                    item.clusters, item.down_at, item.up_at, config.watch.blind_spot_after, delta
                )
            elif isinstance(item, HealthReport):
                health = item
                watch = config.watch
                self.inventory.apply_health(
                    item.streams, item.at, watch.blind_spot_after, watch.stale_after, delta
                )
            else:
                self.inventory.apply(item, delta)
                commit.listed = commit.listed or isinstance(item, SnapshotEnd)
        # A window can overrun with no event: timers re-evaluate the volumes in one.
        in_window = self.rules.open_windows() if timers else set()
        commit.changes = self._changes(delta, timers, now, in_window, lag_refreshed)
        commit.wanted = self.rules.drain_wanted_probes()
        commit.episodes = self.rules.windows.drain()
        if health is not None:
            watch = config.watch
            commit.stream_rows = health_rows(
                health.streams, health.at, watch.blind_spot_after, watch.stale_after
            )
        return commit

    def accept(self, commit: Commit) -> None:
        """The commit stood: the open violations are what it wrote."""
        self.probe_book.accept()
        for change in commit.changes:
            v = change.violation
            key = (v.rule, v.subject)
            if v.state in ("pending", "firing"):
                self.active[key] = v
            else:
                self.active.pop(key, None)

    def follow(self, batch: Sequence[Item]) -> None:
        """A standby's part: what the clusters and Ceph say, kept in memory, judged by no one."""
        stale_after = self.rules.config.probe.record_stale_after
        for item in batch:
            if isinstance(item, ProbeResult):
                self.inventory.apply_probe(item, stale_after)
            elif isinstance(item, KubeEvent):
                self.inventory.apply(item)

    def reload(
        self,
        stored: tuple[Inventory, RuleEngine, dict[ViolationKey, Active]],
        checkpoint: Checkpoint,
    ) -> None:
        """Memory back to what the history holds, keeping the lists in progress (and what only
        memory can hold: when each pool last answered, objects awaiting evidence)."""
        inventory, rules, active = stored
        inventory.resume(checkpoint)
        # The scopes another replica writes are ahead in memory of what it has stored yet:
        # keep them as watched, ready for a takeover.
        followed = self.led.followed_clusters()
        if followed:
            inventory.transplant(self.inventory, followed)
        rules.carry_over(self.rules)
        self.inventory, self.rules = inventory, rules
        self.active.clear()
        self.active.update(active)

    def led_active(self) -> dict[ViolationKey, Active]:
        """The open violations this writer owns."""
        if self.led.everything:
            return self.active
        return {k: v for k, v in self.active.items() if self.led.mine(v.pair, v.cluster)}

    # ------------------------------------------------------------------ verdicts
    def _changes(
        self,
        delta: Delta,
        timers: bool,
        now: datetime,
        in_window: set[VolumeId],
        lag_only: set[VolumeId],
    ) -> list[Change]:
        # A first-ever list is the baseline, not an appearance: those objects were there before
        # auditd looked (and nothing is judged against storage before the first probe anyway).
        appeared = {
            t.key: t.observed_at
            for t in delta.transitions
            if t.field == EXISTS
            and t.new == "true"
            and t.source != "list"
            and t.key.kind in APPEARING
        }
        touched = delta.touched
        # What each key changed: a fact that links nothing is asked of the rules reading it only.
        changed = delta.changed()
        also: set[VolumeId] = set()
        if timers:
            # A pending violation whose `for` has passed fires only on a verdict of now: its
            # condition may have stopped holding with no event reaching it (memory reloaded).
            keys, volumes = self.rules.judged(k[1] for k in self._due(now))
            touched, also = touched | keys, volumes
            for judged in keys:
                changed.pop(judged, None)  # judged again by every rule, whatever it changed
        verdicts = (
            self.rules.evaluate(
                self.inventory,
                touched,
                now,
                also,
                lag_only,
                appeared,
                changed=changed,
                timed=in_window,
                held=self.active,
            )
            if touched or also or lag_only or in_window
            else {}
        )
        if timers:
            for key, verdict in self.rules.timer_verdicts(self.inventory, now).items():
                verdicts.setdefault(key, verdict)
        changes: list[Change] = []
        active, rules = self.active, self.rules.rules
        for key, verdict in verdicts.items():
            if not moves(verdict, key in active):
                continue  # fine with nothing open, or unknown (the engine's are filtered so)
            if not self._decides(key, verdict):
                continue  # another replica leads that pair
            change = step(active.get(key), verdict, rules[key[0]].for_, now)
            if change is not None:
                changes.append(change)
        # In subject order, whatever order the rules answered in: the few changes are sorted,
        # not the thousands of verdicts of a batch.
        changes.sort(key=lambda c: (c.violation.rule, c.violation.subject))
        if timers:
            for key in sorted(self.active):
                v = self.active[key]
                if (
                    key in verdicts
                    or key[0] not in self.rules.rules
                    or not self.led.mine(v.pair, v.cluster)
                ):
                    continue
                change = due(self.active[key], self.rules.rules[key[0]].for_, now)
                if change is not None:
                    changes.append(change)
        return changes

    def _due(self, now: datetime) -> list[ViolationKey]:
        """The pending violations of this writer whose for-duration has passed."""
        rules = self.rules.rules
        return [
            key
            for key, v in self.active.items()
            if v.state == "pending"
            and key[0] in rules
            and due(v, rules[key[0]].for_, now) is not None
            and self.led.mine(v.pair, v.cluster)
        ]

    def _decides(self, key: ViolationKey, verdict: Verdict) -> bool:
        """This process's verdict counts: the violation belongs to a scope it leads."""
        if isinstance(verdict, Finding):
            return self.led.mine(verdict.pair, verdict.cluster)
        held = self.active.get(key)
        return held is None or self.led.mine(held.pair, held.cluster)
