"""What a rule is and what it returns. Rules are pure: facts in, findings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from auditd.config import Config
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.views import VolumeId, VolumeView
from auditd.rules.windows import Episode

Severity = Literal["info", "warning", "critical"]
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Finding:
    """A rule holds for a subject right now (whether it has fired yet is the lifecycle's business)."""

    rule: str
    subject: str
    severity: Severity
    summary: str
    cluster: str | None
    pair: str | None
    evidence: dict[str, Any]


class Unknown:
    """The verdict when the facts a rule needs are unknown (a blind cluster, a failing probe).
    It is neither healthy nor violated: the lifecycle keeps whatever state the subject had."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()
Verdict = Finding | Unknown | None


@dataclass(frozen=True)
class RuleContext:
    inventory: Inventory
    config: Config
    volumes: tuple[VolumeView, ...] = ()  # the pair views of the volumes a change touched
    now: datetime | None = None  # evaluation time: lag is measured against it
    windows: Mapping[VolumeId, Episode] = field(default_factory=dict)  # open DR windows
    # Clusters whose pair has Ceph probes (configured, or results seen): see probed().
    probed_clusters: frozenset[str] = frozenset()
    # When each (cluster, pool) last answered a status probe (its start), and the PVC/PV/VRs
    # that appeared while auditd watched, with when: what awaiting_evidence() weighs.
    probed_at: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    appeared: Mapping[ObjectKey, datetime] = field(default_factory=dict)
    # Failovers done while the old primary was unreachable, until it is seen fenced.
    peer_lost: Mapping[VolumeId, Episode] = field(default_factory=dict)
    # Every volume in a DR window now, evaluated or not: what a pool's summary may reflect.
    switching: frozenset[VolumeId] = frozenset()
    # The volume whose PVC of the same namespace/name is on the peer cluster (the Correlator's
    # index): how a PVC or VR not linked to a PV of its own finds its volume.
    peer_claim: Callable[[ObjectKey], VolumeId | None] = lambda _key: None
    # The pair views of every volume an object joins (a consistency group's members, a Ramen
    # VRG's namespace), evaluated in this round or not.
    members: Callable[[ObjectKey], tuple[VolumeView, ...]] = lambda _key: ()
    # The other way: the objects (VRGs, DRPCs, groups) whose members include a volume.
    joining: Callable[[VolumeId], set[ObjectKey]] = lambda _vid: set()
    # What rules derive from the whole pair rather than one volume (a hub's fenced clusters),
    # kept for the rest of this evaluation: the facts it reads do not change within one.
    _derived: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)

    def derived(self, name: str, scope: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per evaluation for (name, scope): a rule judging 10,000 volumes
        of one pair asks about the pair once, not 10,000 times."""
        key = (name, scope)
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    @cached_property
    def views(self) -> Mapping[VolumeId, VolumeView]:
        return {v.id: v for v in self.volumes}

    def in_window(self, view: VolumeView | None) -> bool:
        return view is not None and view.id in self.windows

    def role_of(self, cluster: str) -> str | None:
        known = self.config.clusters_by_name.get(cluster)
        return known.role if known is not None else None

    def awaiting_evidence(self, key: ObjectKey, view: VolumeView | None) -> bool:
        """Is the storage evidence older than this object? An object that appeared after a
        site's last probe is judged against storage only once a probe started after it has
        answered on both sites: after a forced failover the new primary's record from before
        its promotion must not make its new PVC a PVC "on the secondary"."""
        since = self.appeared.get(key)
        if since is None or not self.probed(key.cluster):
            return False
        if view is None:
            return True
        return any(
            self.probed_at.get((s.cluster, view.id.pool), _NEVER) < since for s in view.sides
        )

    def probed(self, cluster: str) -> bool:
        """Is Ceph probed for this cluster's pair? Then storage decides roles, never the
        configured role, even before the first probe has answered."""
        return cluster in self.probed_clusters


# Given the keys a change touched (and the views of the volumes they affect), return a verdict
# for every subject affected: a Finding when violated, None when fine, UNKNOWN when unknowable.
Evaluate = Callable[[RuleContext, Iterable[ObjectKey]], dict[str, Verdict]]
Reads = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class RuleWords:
    """A rule before it has an evaluation: its name, severity, for-duration, the words of its
    alerts and the by-hand check an SRE runs to confirm one. Every rule decorator takes these,
    so that they are declared once, beside the rule's function."""

    id: str
    severity: Severity
    for_: timedelta
    summary: str
    description: str
    verify: str
    # The PVC, PV and VolumeReplication facts the rule reads itself (rules/narrow.py).
    reads: Reads | None = None

    def rule(self, evaluate: Evaluate) -> Rule:
        return Rule(
            self.id,
            self.severity,
            self.for_,
            self.summary,
            self.description,
            self.verify,
            evaluate,
            self.reads,
        )


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    for_: timedelta
    summary: str
    description: str
    remediation: str
    evaluate: Evaluate
    # The facts of PVCs, PVs and VolumeReplications the rule reads itself, beyond its volume's
    # view: (kind, field), a field ending in "*" for a prefix. A change to none of them cannot
    # change its verdict, so the engine does not ask it (rules/narrow.py). None: it may read
    # any fact, and is asked about every change. Facts that only go into a finding's evidence
    # do not count (an open violation keeps the evidence it fired with).
    reads: Reads | None = None
