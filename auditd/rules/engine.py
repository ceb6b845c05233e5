"""Apply the configured rules to the keys a change touched."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from auditd.config import MIRROR_REFRESH, Config, ConfigError
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.inventory.rbd_facts import RBD_IMAGE, RBD_POOL
from auditd.matchers import unknown_names
from auditd.rules.catalogue import BUILTIN_RULES, LAG_RULES
from auditd.rules.lifecycle import moves
from auditd.rules.model import Finding, Rule, RuleContext, Verdict
from auditd.rules.narrow import Field, narrow_changes, reads_any
from auditd.rules.subjects import judged
from auditd.rules.views import (
    PV,
    PVC,
    VR,
    Correlator,
    VolumeId,
    VolumeView,
    first_listing,
    not_current,
    surroundings,
)
from auditd.rules.windows import WindowTracker
from auditd.sources.rbd.probe import ProbeResult

# How long after a role change records that do not settle are probed again on demand: three
# of rbd-mirror's 30 s rewrites.
SETTLE_WITHIN = 3 * MIRROR_REFRESH


def configured_rules(config: Config) -> dict[str, Rule]:
    """The built-in rules with the config's overrides; unknown rule ids are config errors."""
    known = {r.id: r for r in BUILTIN_RULES}
    for rule_id in config.rules:
        if rule_id not in known:
            raise ConfigError(
                f"rules.{rule_id}", f"unknown rule (known: {', '.join(sorted(known))})"
            )
    for i, inhibit in enumerate(config.alerts.inhibit_rules):
        spelt = inhibit.rule()
        unknown = unknown_names((*spelt.source, *spelt.target), "rule", known)
        if unknown:
            raise ConfigError(
                f"alerts.inhibit_rules[{i}]",
                f"no rule {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})",
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
        self._unsettled: set[VolumeId] = set()  # views whose records are catching up
        # The view each volume was last judged on, until a change other than a narrow one
        # reaches it (_view); dropped at every probe, so it holds a minute's worth at most.
        self._views: dict[VolumeId, VolumeView] = {}
        # Of those, the volumes the window tracker last looked at on that very view and left as
        # they were (no window, none opened, nothing noted): looking again at the same view
        # after a change it does not read (WindowTracker.QUIET_READS) would do the same.
        self._quiet: set[VolumeId] = set()
        # Storage evidence against Kubernetes objects (RuleContext.awaiting_evidence): when each
        # pool last answered, and the objects that appeared since with when. In memory only:
        # after a restart every object was judged before, and the first probes come at once.
        self._probed_at: dict[tuple[str, str], datetime] = {}
        # When each pool's lag was last judged (lag_only): at most twice per probe interval,
        # and never less often than regular probes come (their jitter only delays them).
        self._lag_judged_at: dict[tuple[str, str], datetime] = {}
        probe = config.probe
        self._lag_every = max(min(probe.interval / 2, probe.interval - probe.jitter), timedelta(0))
        self._appeared: dict[ObjectKey, datetime] = {}
        self._answered: set[str] = set()  # pairs a status probe answered since the last evaluation
        self._evidenced: list[ObjectKey] = []
        # Probes worth running now rather than at the next interval (drain_wanted_probes).
        self._wanted: set[tuple[str, str]] = set()
        self._pairs = {p.name: p for p in config.pairs}
        # What the views of each cluster's volumes read of its streams and pools, as of the
        # last evaluation (views.surroundings): a change re-judges its pairs.
        self._surroundings: dict[str, tuple[object, ...]] = {}
        self._pair_of = {c: p.name for p in config.pairs for c in p.clusters}
        # Each rule's configured namespace scope (empty: everywhere).
        self._scopes = {rid: frozenset(o.namespaces) for rid, o in config.rules.items()}

    def index(self, inventory: Inventory) -> None:
        """Link every object held (loaded from the history) into the volume views. Without it,
        an object that arrives later would find no view to join: a VR would not resolve its
        volume's pending unprotected-volume."""
        self.correlator.update(inventory, sorted(inventory.objects))

    def carry_over(self, previous: RuleEngine) -> None:
        """Keep what only memory holds (when each pool last answered, the objects awaiting
        newer storage evidence, the probes asked for) when the rest is reloaded from the
        history after a lost commit: none of it is stored, and all of it is still true."""
        self._probed_at = dict(previous._probed_at)
        self._lag_judged_at = dict(previous._lag_judged_at)
        self._appeared = dict(previous._appeared)
        self._answered = set(previous._answered)
        self._wanted |= previous._wanted
        self._unsettled = set(previous._unsettled)

    def judged(self, subjects: Iterable[str]) -> tuple[set[ObjectKey], set[VolumeId]]:
        """The objects and volumes that these violations' subjects name, to judge again."""
        keys: set[ObjectKey] = set()
        volumes: set[VolumeId] = set()
        clusters = {c.name for c in self.config.clusters}
        for subject in subjects:
            target = judged(subject, self._pairs, clusters)
            if isinstance(target, VolumeId):
                volumes.add(target)
            elif target is not None:
                keys.add(target)
        return keys, volumes

    def record_probe(self, result: ProbeResult) -> set[VolumeId]:
        """The volumes whose lag a successful probe refreshed, to be judged by the lag rules:
        lag grows with time, so every regular probe cycle judges them all. A probe out of turn
        (asked for a PVC just created, or a switch settling) within half an interval of the
        pool's last judged one adds only its unsettled volumes: at 10,000 images a lag cycle
        holds the writer for a second, and a lag crossing is still seen by the next regular
        probe, as it would have been without the extra one. Volumes whose records changed a
        fact are judged by every rule anyway (the inventory touched them)."""
        out: set[VolumeId] = set()
        if result.status is None:
            return out
        self._views.clear()  # its records are in the views of its pool's volumes
        self._quiet.clear()
        key = (result.cluster, result.pool)
        last = self._probed_at.get(key)
        if last is None or result.at > last:
            self._probed_at[key] = result.at
        pair = self._pair_of.get(result.cluster)
        if pair is not None and self._appeared:
            self._answered.add(pair)
        judged = self._lag_judged_at.get(key)
        # The same result again is a batch taken in again after a failed commit: due again.
        due = judged is None or result.at == judged or result.at - judged >= self._lag_every
        if due:
            self._lag_judged_at[key] = result.at
        for image in result.status.images:
            vid = self.correlator.volume_of_image(result.cluster, result.pool, image.name)
            if vid is not None and (due or vid in self._unsettled):
                out.add(vid)
        return out

    def evaluate(
        self,
        inventory: Inventory,
        touched: Iterable[ObjectKey],
        now: datetime,
        also: Iterable[VolumeId] = (),
        lag_only: Iterable[VolumeId] = (),
        appeared: Mapping[ObjectKey, datetime] | None = None,
        switching: frozenset[VolumeId] = frozenset(),
        changed: Mapping[ObjectKey, Iterable[str]] | None = None,
        timed: Iterable[VolumeId] = (),
        held: Container[tuple[str, str]] | None = None,
    ) -> dict[tuple[str, str], Verdict]:
        """Verdicts for every subject the touched keys (and ``also`` volumes) affect, only those.

        ``held``: the violations open (rule, subject). When given, only the verdicts that can
        move one are returned (``lifecycle.moves``): the writer's. A start judges every volume
        in one batch, and at 50,000 volumes the healthy and unknown verdicts nobody reads
        held 150 MB at once; explain and check want every verdict, and give none.

        ``timed``: volumes judged again because time moved (a timer tick: those in a DR
        window, which can overrun with no event). Every rule is asked, on the view each was
        last judged on when nothing else reached it since: at 5,000 volumes in one
        application's failover, rebuilding their views was half of every 5 s tick.

        ``changed``: the facts each touched key changed (its transitions' fields). A volume
        reached only by narrow changes (rules/narrow.py) is asked of only the rules that read
        one of them; without ``changed`` every rule is asked about every volume.

        ``switching``: volumes known to be mid-switch with no window open, as one look tells
        (`auditd check`): what a pool's summary may reflect, as for volumes in a window.

        ``lag_only`` volumes only had their lag refreshed by a probe (nothing else about them
        changed): only the lag rules look at them. At 10,000 volumes that is most of every
        probe cycle, and a fraction of the cost of all rules."""
        # Objects that appeared (PVC/PV/VR created, or found by a relist) await storage evidence
        # newer than they are; those of a pair a probe just answered are judged again.
        touched = set(touched)
        # An object judged through no view of its own cluster (a PVC whose PV is gone, judged
        # against its peer's volume) is judged on its key alone: by every rule.
        narrow = {
            k: f
            for k, f in (narrow_changes(changed) if changed else {}).items()
            if self.correlator.linked(inventory, k)
        }
        if appeared:
            probed = self._probed_clusters(inventory)
            for key, at in appeared.items():
                if key.kind in (PVC, PV, VR) and key.cluster in probed:
                    self._appeared[key] = at
        if self._answered:
            self._appeared = {k: t for k, t in self._appeared.items() if k in inventory.objects}
            touched |= {k for k in self._appeared if self._pair_of.get(k.cluster) in self._answered}
            self._answered.clear()
        # Awaiting storage evidence is judged by every rule, whatever changed.
        for key in self._appeared.keys() & narrow.keys():
            del narrow[key]
        # What the views read of a cluster's streams and pools changing (blind and back, a
        # probe failing or answering again) re-judges every pair it is in (a hub: every pair
        # it serves); their unlinked objects too (found from the views, in ``_evaluate``), or
        # a PVC judged UNKNOWN while its cluster was blind stays so.
        pairs = {p.name for c in self._shifted(inventory) for p in self.config.pairs_of(c)}
        whole = [c for p in sorted(pairs) for c in self._pairs[p].clusters]
        # Deterministic order, whatever order the events came in.
        keys = sorted(touched)
        refreshed = set(lag_only)
        # A view waiting for its records to settle changes with a rewrite alone (no fact
        # changes): every probe of it is judged by every rule, not only the lag rules.
        reach: dict[ObjectKey, set[VolumeId]] = {}
        self.correlator.update(inventory, keys, reach)
        keys = self._judged_now(inventory, keys, narrow, reach)
        # Objects judged though not touched: those a volume gone was a member of, and those
        # judged from the peer against a volume judged now (Correlator.judged_against).
        others = self.correlator.drain_left()
        wide = set(also) | (self._unsettled & refreshed) | self.correlator.volumes_of_pairs(pairs)
        for key in keys:
            if key not in narrow:
                wide |= reach[key]
        facts_of: dict[VolumeId, set[Field]] = {}
        for key, facts in narrow.items():
            for vid in reach.get(key, ()):
                if vid not in wide:
                    facts_of.setdefault(vid, set()).update(facts)
        reached = wide | facts_of.keys()
        only_timed = frozenset(v for v in timed if v not in reached)
        volumes = sorted(reached | only_timed)
        holding = self.correlator.holding_claims(inventory)
        for vid in volumes:
            others |= self.correlator.judged_against(inventory, vid, holding)
        others -= touched
        verdicts = self._evaluate(
            inventory,
            sorted({*keys, *others}) if others else keys,
            volumes,
            now,
            self.rules.values(),
            switching,
            narrow=(narrow, facts_of),
            reuse=only_timed,
            held=held,
            whole=whole,
        )
        lagging = sorted(refreshed - set(volumes))
        if lagging:
            lag_rules = [r for r in self.rules.values() if r.id in LAG_RULES]
            verdicts.update(
                self._evaluate(inventory, [], lagging, now, lag_rules, observe=False, held=held)
            )
        for vid in self.correlator.drain_gone():  # judged above for the last time
            self.windows.forget(vid)
            self._views.pop(vid, None)
            self._quiet.discard(vid)
            self._unsettled.discard(vid)
        return verdicts

    def _judged_now(
        self,
        inventory: Inventory,
        keys: list[ObjectKey],
        narrow: dict[ObjectKey, frozenset[Field]],
        reach: Mapping[ObjectKey, set[VolumeId]],
    ) -> list[ObjectKey]:
        """The keys to judge in this evaluation. A change on a cluster still on its first list
        waits for the list's end if a volume's view holds it: that end judges every volume of
        the cluster's pairs on the whole list (``first_listing``). Judged page by page, a
        partial list said mostly UNKNOWN (the cluster is not current), at times what the rest
        of the list would settle, and a start judged every volume twice (50,000 volumes: 31-32
        s to the first sync, 24-28 s without). A violation such a change moves, it moves at the
        list's end. Judged now: what no view holds (the end reaches it by no volume), and an
        object awaiting storage evidence (it asks for a probe)."""
        clusters = {k.cluster for k in keys}
        listing = {c for c in clusters if first_listing(inventory, c)}
        if not listing:
            return keys
        linked, appeared = self.correlator.linked, self._appeared
        waiting = {
            k for k in keys if k.cluster in listing and k not in appeared and linked(inventory, k)
        }
        for key in waiting:
            narrow.pop(key, None)
            # The view judged last no longer holds what the key changed: a narrow change on
            # the peer must not reuse it meanwhile (_view).
            for vid in reach[key]:
                self._views.pop(vid, None)
                self._quiet.discard(vid)
        return [k for k in keys if k not in waiting]

    def _shifted(self, inventory: Inventory) -> set[str]:
        """The clusters whose ``surroundings`` changed since the last evaluation. An engine
        that has judged nothing yet (a start, memory reloaded after a lost commit) knows
        under which surroundings no verdict was made: every cluster counts as changed."""
        seen = {c.name: surroundings(inventory, c.name) for c in self.config.clusters}
        shifted = {c for c, now in seen.items() if self._surroundings.get(c) != now}
        self._surroundings = seen
        return shifted

    def _evaluate(
        self,
        inventory: Inventory,
        keys: list[ObjectKey],
        volumes: list[VolumeId],
        now: datetime,
        rules: Iterable[Rule],
        switching: frozenset[VolumeId] = frozenset(),
        observe: bool = True,
        narrow: tuple[Mapping[ObjectKey, frozenset[Field]], Mapping[VolumeId, set[Field]]]
        | None = None,
        reuse: frozenset[VolumeId] = frozenset(),
        held: Container[tuple[str, str]] | None = None,
        whole: Sequence[str] = (),
    ) -> dict[tuple[str, str], Verdict]:
        """``narrow``: the keys changed only narrowly, and the volumes only they reach with the
        facts that changed there: each rule is asked about those only if it reads one.

        ``whole``: clusters whose pairs are judged whole (every volume among ``volumes``):
        their objects no view holds are judged too, on their keys, by every rule."""
        narrow_keys, narrow_volumes = narrow or ({}, {})
        # Whether each cluster is blind is asked once for all the views, not once per side.
        blind = {c: not_current(inventory, c) for c in self._pair_of}
        views = tuple(
            self._view(inventory, v, blind, v in narrow_volumes or v in reuse) for v in volumes
        )
        if whole:
            # The views just built hold every linked key of these clusters: asking
            # ``Correlator.linked`` of each key again was a tenth of judging a pair whole.
            unlinked = self.correlator.unlinked(inventory, whole, views)
            keys = sorted({*keys, *unlinked})
            narrow_keys = {k: f for k, f in narrow_keys.items() if k not in unlinked}
        for view in views:
            if view.settled:
                self._unsettled.discard(view.id)
            else:
                self._unsettled.add(view.id)
        windows, peer_lost = {}, {}
        moved: set[VolumeId] = set()
        quiet = self._quiet
        for view in views:
            # A lag refresh changes no state a window follows: look the window up, no more.
            was = self.windows.open.get(view.id)
            steps = len(was.steps) if was is not None else 0
            if not observe:
                episode = was
            elif was is None and view.id in quiet and _unread(narrow_volumes.get(view.id)):
                continue  # the tracker's last look, on this view, stands (self._quiet)
            else:
                before = self.windows.steady_primary(view.id)
                episode = self.windows.observe(view, inventory, now)
                if (
                    was is None
                    and episode is None
                    and self.windows.steady_primary(view.id) == before
                ):
                    quiet.add(view.id)
                else:
                    quiet.discard(view.id)  # the tracker moved: its next look may differ
            if episode is not was or (episode is not None and len(episode.steps) != steps):
                moved.add(view.id)  # its window opened, stepped or closed: every rule asks
            if episode is not None and episode.switching:
                windows[view.id] = episode
            if episode is not None and episode.peer_lost:
                peer_lost[view.id] = episode
        probed = self._probed_clusters(inventory)
        built = {v.id: v for v in views}
        joined: dict[ObjectKey, tuple[VolumeView, ...]] = {}

        def members(key: ObjectKey) -> tuple[VolumeView, ...]:
            # Several rules ask about one application per evaluation (its VRG, its DRPC, its
            # group), and each answer is the view of every volume it joins: each view of a
            # namespace of 5,000 PVCs is built once per evaluation, not once per ask. A member
            # nothing reached in this evaluation is as it was last judged (anything but a
            # narrow change reaching it would have judged it, on a view built again): its
            # view then, with what it derived, is reused. Building 5,000 was 0.3 s of every
            # wide change in the namespace (bench/rules_eval.py --app-size 5000).
            found = joined.get(key)
            if found is None:
                found = joined[key] = tuple(
                    built.get(vid)
                    or built.setdefault(vid, self._view(inventory, vid, blind, unchanged=True))
                    for vid in sorted(self.correlator.joined_volumes(inventory, key))
                )
            return found

        joins: dict[VolumeId, set[ObjectKey]] = {}

        def joining(vid: VolumeId) -> set[ObjectKey]:
            # Asked by each object rule and each DRPC rule about every volume judged: once.
            found = joins.get(vid)
            if found is None:
                found = joins[vid] = self.correlator.joining(inventory, vid)
            return found

        ctx = RuleContext(
            inventory,
            self.config,
            views,
            now,
            windows,
            probed,
            self._probed_at,
            self._appeared,
            peer_lost,
            switching | frozenset(v for v, e in self.windows.open.items() if e.switching),
            lambda key: self.correlator.peer_claim_volume(inventory, key),
            members,
            joining,
        )
        if observe:
            self._want_probes(ctx, inventory, keys, probed)
        verdicts: dict[tuple[str, str], Verdict] = {}
        asks = _Asks(
            ctx, keys, narrow_keys, {v: f for v, f in narrow_volumes.items() if v not in moved}
        )
        for rule in rules:
            rule_ctx, rule_keys = asks.of(rule)
            if not rule_ctx.volumes and not rule_keys:
                continue  # nothing of what changed is anything it reads
            scope = self._scopes.get(rule.id, frozenset())
            for subject, verdict in rule.evaluate(rule_ctx, rule_keys).items():
                if isinstance(verdict, Finding):
                    ns = verdict.evidence.get("namespace")
                    override = self.config.rules.get(rule.id)
                    if scope and ns is not None and ns not in scope:
                        verdict = None  # out of this rule's configured namespace scope
                    elif override is not None and override.severity is not None:
                        verdict = replace(verdict, severity=override.severity)
                said = (rule.id, subject)
                if held is None or moves(verdict, said in held):
                    verdicts[said] = verdict
        for key in self._evidenced:
            self._appeared.pop(key, None)
        self._evidenced.clear()
        return verdicts

    def _view(
        self, inventory: Inventory, vid: VolumeId, blind: Mapping[str, bool], unchanged: bool
    ) -> VolumeView:
        """The volume's view; the one built last time when only narrow changes reached it since
        (they change nothing a view holds: rules/narrow.py), or only time moved (``timed``).
        Anything else that reaches a volume (a wide change, a violation due, a lag refresh)
        builds it again, and a probe's records are in every view, so a probe drops them all
        (``record_probe``)."""
        if unchanged:
            view = self._views.get(vid)
            if view is not None:
                return view
        view = self._views[vid] = self.correlator.view(inventory, vid, blind)
        self._quiet.discard(vid)
        return view

    def _want_probes(
        self, ctx: RuleContext, inventory: Inventory, keys: list[ObjectKey], probed: frozenset[str]
    ) -> None:
        """Which pools to probe now rather than at the next interval: both sites' of a volume
        whose records do not settle (a switch, or a forced promotion, shows itself in the
        next rewrite), and of an object still awaiting evidence (a PVC just created)."""
        now = ctx.now
        for view in ctx.volumes:
            if view.settled or not view.confirmed or not all(s.image for s in view.sides):
                continue
            # Only just after a role change: records settle within one rewrite of it, and a
            # record that never will (rbd-mirror down) must not be probed every gap forever.
            changed = [s.record.role_changed_at for s in view.sides if s.record is not None]
            if now is not None and any(t is not None and now - t <= SETTLE_WITHIN for t in changed):
                self._wanted |= {(s.cluster, view.id.pool) for s in view.sides}
        for key in keys:
            since = self._appeared.get(key)
            if since is None:
                continue
            pair = self._pairs[self._pair_of[key.cluster]]
            vid = self.correlator.volume_of(inventory, key)
            pools = [vid.pool] if vid is not None else pair.pools
            stale = {
                (c, pool)
                for c in pair.clusters
                for pool in pools
                if self._probed_at.get((c, pool), since - timedelta(seconds=1)) < since
            }
            if stale or vid is None:
                self._wanted |= stale
            else:
                self._evidenced.append(key)  # judged on evidence newer than it: done waiting

    def drain_wanted_probes(self) -> set[tuple[str, str]]:
        out, self._wanted = self._wanted, set()
        return out

    def timer_verdicts(self, inventory: Inventory, now: datetime) -> dict[tuple[str, str], Verdict]:
        """What time alone can change without an event: a failing probe crossing
        probe.blind_after (a failing probe's results change no fact, so nothing else asks)."""
        rule = self.rules.get("audit-blind-spot")
        if rule is None:
            return {}
        keys = [
            k
            for c in self.config.clusters
            for k in inventory.keys_of(c.name, RBD_POOL)
            if inventory.objects[k].facts.get("probe") == "failing"
        ]
        if not keys:
            return {}
        ctx = RuleContext(inventory, self.config, (), now, {}, self._probed_clusters(inventory))
        return {(rule.id, subject): v for subject, v in rule.evaluate(ctx, keys).items()}

    def seed(self, inventory: Inventory) -> None:
        """After loading a previous run's state: each volume's last known primary, so that a
        switch beginning before the first settled view still knows where it came from."""
        primaries: dict[VolumeId, set[str]] = {}
        for cluster in self.config.clusters:
            for key in inventory.keys_of(cluster.name, RBD_IMAGE):
                if inventory.objects[key].facts.get("primary") != "true":
                    continue
                vid = self.correlator.volume_of_image(cluster.name, key.namespace, key.name)
                if vid is not None:
                    primaries.setdefault(vid, set()).add(cluster.name)
        for vid, clusters in primaries.items():
            if len(clusters) == 1:
                self.windows.seed(vid, next(iter(clusters)))

    def _probed_clusters(self, inventory: Inventory) -> frozenset[str]:
        probed = {c.name for c in self.config.clusters if c.ceph is not None} | {
            c.name for c in self.config.clusters if inventory.keys_of(c.name, RBD_POOL)
        }
        return frozenset(
            c for p in self.config.pairs if probed & set(p.clusters) for c in p.clusters
        )

    def open_windows(self) -> set[VolumeId]:
        """Volumes in a DR window: timers re-evaluate them (a window can overrun its deadline)."""
        return set(self.windows.open)


def _unread(facts: Iterable[Field] | None) -> bool:
    """Were these narrow changes all of facts the window tracker does not read while no
    window is open? (None: the volume was reached by something other than a narrow change.)"""
    return facts is not None and not reads_any(WindowTracker.QUIET_READS, facts)


class _Asks:
    """What each rule is asked about in one evaluation: every volume and key, less those
    changed only in facts the rule does not read (rules/narrow.py). Rules reading the same of
    the changed facts share one context, so what it derives is derived once."""

    def __init__(
        self,
        ctx: RuleContext,
        keys: list[ObjectKey],
        narrow_keys: Mapping[ObjectKey, frozenset[Field]],
        narrow_volumes: Mapping[VolumeId, set[Field]],
    ) -> None:
        self.ctx, self.keys = ctx, keys
        self.narrow_keys = {k: narrow_keys[k] for k in keys if k in narrow_keys}
        self.narrow_volumes = {k: frozenset(f) for k, f in narrow_volumes.items()}
        self._facts = list(set(self.narrow_keys.values()) | set(self.narrow_volumes.values()))
        self._asked: dict[tuple[bool, ...], tuple[RuleContext, list[ObjectKey]]] = {}
        self._by_reads: dict[frozenset[Field], tuple[RuleContext, list[ObjectKey]]] = {}

    def of(self, rule: Rule) -> tuple[RuleContext, list[ObjectKey]]:
        if not self._facts or rule.reads is None:
            return self.ctx, self.keys
        asked = self._by_reads.get(rule.reads)
        if asked is None:
            wants = tuple(reads_any(rule.reads, facts) for facts in self._facts)
            asked = (self.ctx, self.keys) if all(wants) else self._asked.get(wants)
            if asked is None:
                skip = {f for f, want in zip(self._facts, wants, strict=True) if not want}
                volumes = tuple(
                    v for v in self.ctx.volumes if self.narrow_volumes.get(v.id) not in skip
                )
                keys = [k for k in self.keys if self.narrow_keys.get(k) not in skip]
                asked = self._asked[wants] = (replace(self.ctx, volumes=volumes), keys)
            self._by_reads[rule.reads] = asked
        return asked
