"""Judge one look with the daemon's own core: the same inventory, pair views and rules
(rules/engine.py), not a copy. Pure: a Look in, a Check out.

One look cannot apply for-durations (nothing has lasted yet): every finding is reported as it
stands, and the output says so. A volume caught in a switch (both sides demoted, records still
catching up with a role change, a DRPC in a progression) is reported as switching: what a switch
makes transient is not called a violation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from auditd.check.look import Look
from auditd.config import Config
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine
from auditd.rules.model import Finding, Rule, Unknown, Verdict
from auditd.rules.views import DRPC_MOVING, PV, PVC, VR, VolumeId, VolumeView

Outcome = Literal["ok", "violated", "unknown", "switching"]

# Rules about what auditd itself can see: in one look, their findings are what was not seen.
ABOUT_SEEING = frozenset({"audit-blind-spot"})

# Exit codes, as documented in `auditd check --help`.
EXIT_OK, EXIT_VIOLATED, EXIT_CONFIG, EXIT_UNSEEN, EXIT_SWITCHING = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Row:
    volume: str  # pair/pool/image, or the cluster for what belongs to no volume
    rule: str
    subject: str
    outcome: Outcome
    severity: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    verify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    at: str
    rows: tuple[Row, ...]
    unseen: tuple[str, ...]
    switching: tuple[str, ...]
    volumes: tuple[str, ...]
    commands: dict[str, tuple[str, ...]]  # per volume: the seed's by-hand checks, names filled

    @property
    def exit_code(self) -> int:
        """1 on any violation (a definite failure, whatever else is unknown); else 3 when
        something could not be seen (never a pass); else 4 while a switch is in progress."""
        if any(r.outcome == "violated" for r in self.rows):
            return EXIT_VIOLATED
        if self.unseen or any(r.outcome == "unknown" for r in self.rows):
            return EXIT_UNSEEN
        if self.switching:
            return EXIT_SWITCHING
        return EXIT_OK


@dataclass(frozen=True)
class Seen:
    """One look taken in by the daemon's core: what `auditd check` and `preflight` judge."""

    inventory: Inventory
    views: dict[VolumeId, VolumeView]  # every volume of every pair
    switching: frozenset[VolumeId]
    verdicts: dict[tuple[str, str], Verdict]
    rules: dict[str, Rule]


def assess(config: Config, look: Look) -> Seen:
    inventory = Inventory()
    engine = RuleEngine(config)
    for event in look.events:
        inventory.apply(event)
    inventory.apply_health(
        look.streams, look.at, config.watch.blind_spot_after, config.watch.stale_after
    )
    for probe in look.probes:
        inventory.apply_probe(probe, config.probe.record_stale_after)
        engine.record_probe(probe)
    engine.index(inventory)
    every = {
        vid: engine.correlator.view(inventory, vid) for vid in sorted(engine.correlator.volumes())
    }
    # Mid-switch as one look can tell; the pool rule weighs it as it weighs a DR window (a
    # demote turns the pool's summary WARNING on both sites while the daemons are fine).
    switching = frozenset(vid for vid, v in every.items() if switching_now(v))
    verdicts = engine.evaluate(inventory, set(inventory.objects), look.at, switching=switching)
    return Seen(inventory, every, switching, verdicts, engine.rules)


def judge(
    config: Config,
    seen: Seen,
    at: datetime,
    unseen: tuple[str, ...] = (),
    pair: str | None = None,
    namespace: str | None = None,
) -> Check:
    switching, verdicts = seen.switching, seen.verdicts
    views = {vid: v for vid, v in seen.views.items() if wanted(v, pair, namespace)}
    owners = _owners(views)
    rows: list[Row] = []
    for (rule_id, subject), verdict in sorted(verdicts.items()):
        rule = seen.rules[rule_id]
        volume = owners.get(subject)
        if volume is None:
            if not _outside_volumes_wanted(subject, config, pair, namespace):
                continue
            where = _cluster_of(subject)
        else:
            where = str(volume)
        if isinstance(verdict, Finding) and rule_id in ABOUT_SEEING:
            # auditd's own blindness: what it could not see is unknown, not a DR violation.
            rows.append(Row(where, rule_id, subject, "unknown", verdict.severity, verdict.summary))
        elif isinstance(verdict, Finding):
            mid_switch = volume in switching or _pool_mid_switch(verdict, switching)
            outcome: Outcome = "switching" if mid_switch else "violated"
            rows.append(
                Row(
                    where,
                    rule_id,
                    subject,
                    outcome,
                    verdict.severity,
                    verdict.summary,
                    verdict.evidence,
                    _verify(rule.remediation, subject, views.get(volume) if volume else None),
                )
            )
        else:
            outcome = "unknown" if isinstance(verdict, Unknown) else "ok"
            if outcome == "unknown" and volume in switching:
                outcome = "switching"  # no primary yet: its lag cannot be known mid-switch
            rows.append(Row(where, rule_id, subject, outcome, rule.severity, rule.summary))
    return Check(
        at.isoformat(),
        tuple(rows),
        unseen,
        tuple(sorted(str(v) for v in switching if v in views)),
        tuple(str(v) for v in views),
        {str(vid): _by_hand(config, v) for vid, v in views.items()},
    )


def wanted(view: VolumeView, pair: str | None, namespace: str | None) -> bool:
    if pair is not None and view.id.pair != pair:
        return False
    if namespace is None:
        return True
    return any(s.pvc is not None and s.pvc.namespace == namespace for s in view.sides)


def switching_now(view: VolumeView) -> bool:
    """A switch under way, as far as one look can tell."""
    if view.in_transition or any(p in DRPC_MOVING for p in view.drpc_phases):
        return True
    # Records still catching up with a role change (rbd-mirror rewrites within 30 s).
    return view.storage_known and not view.settled


def _owners(views: dict[VolumeId, VolumeView]) -> dict[str, VolumeId]:
    """Each subject a volume's verdicts can be about (the volume, its PVC/PV/VR on either
    side) -> that volume."""
    out: dict[str, VolumeId] = {}
    for vid, view in views.items():
        out[str(vid)] = vid
        for s in view.sides:
            for key in (s.pvc, s.pv, s.vr):
                if key is not None:
                    out[str(key)] = vid
            # A PVC or VR of the same namespace/name on the peer belongs to this volume too,
            # linked to no PV of its own (a stray PVC on the secondary), as the rules join it.
            for key in (s.pvc, s.vr):
                if key is not None:
                    peer = view.peer(s.cluster).cluster
                    out.setdefault(str(key._replace(cluster=peer)), vid)
    return out


def _pool_mid_switch(finding: Finding, switching: frozenset[VolumeId]) -> bool:
    """A pool's summary WARNING with its rbd-mirror daemons OK, while one of its volumes is mid
    switch: the summary reflects the switch (a demote turns it WARNING on both sites), and
    one look cannot tell how long it lasts. The daemon gives it its 2-minute for-duration; the
    images are judged by their own rules meanwhile. A daemon not OK is never excused."""
    if finding.rule != "pool-mirroring-unhealthy" or finding.evidence.get("daemon_health") != "OK":
        return False
    pool = finding.subject.rsplit("/", 1)[-1]
    return any(v.pair == finding.pair and v.pool == pool for v in switching)


def _cluster_of(subject: str) -> str:
    """The cluster a subject that belongs to no volume is on: dr1/RbdPool/replicapool,
    cluster/dr2, dr2/PersistentVolumeClaim/ns/name."""
    first, _, rest = subject.partition("/")
    return rest.split("/", 1)[0] if first == "cluster" else first


def _outside_volumes_wanted(
    subject: str, config: Config, pair: str | None, namespace: str | None
) -> bool:
    """A verdict about no volume (a pool, a cluster, an unlinked object): kept unless the
    filters rule it out."""
    cluster = _cluster_of(subject)
    if pair is not None:
        clusters = next((set(p.clusters) for p in config.pairs if p.name == pair), set())
        if cluster not in clusters and not subject.startswith(f"{pair}/"):
            return False
    if namespace is not None:
        parts = subject.split("/")
        return len(parts) == 4 and parts[2] == namespace
    return True


def _verify(template: str, subject: str, view: VolumeView | None) -> tuple[str, ...]:
    """The rule's by-hand commands with the real names filled in."""
    text = template
    parts = subject.split("/")
    if len(parts) >= 3 and parts[1] in {PVC, VR}:
        text = text.replace("CLUSTER", parts[0]).replace("NAMESPACE", parts[2])
        text = text.replace("NAME", parts[-1])
    elif len(parts) == 3 and parts[1] == PV:
        text = text.replace("CLUSTER", parts[0]).replace("NAME", parts[2])
    if view is not None:
        text = text.replace("POOL/IMAGE", f"{view.id.pool}/{view.id.image}")
        text = text.replace("POOL", view.id.pool)
        side = next((s for s in view.sides if s.pvc is not None), None)
        if side is not None and side.pvc is not None:
            text = text.replace("NAMESPACE", side.pvc.namespace).replace("NAME", side.pvc.name)
            text = text.replace("CLUSTER", side.cluster)
    return tuple(c.strip() for c in text.split(";") if c.strip())


def _by_hand(config: Config, view: VolumeView) -> tuple[str, ...]:
    """The seed's checks for one volume: what SHOULD and SHOULD NOT exist on each side, and
    each site's mirror status, as one would type them."""
    out: list[str] = []
    pvc = next((s.pvc for s in view.sides if s.pvc is not None), None)
    pv = next((s.pv for s in view.sides if s.pv is not None), None)
    primary = view.primary_cluster
    for s in view.sides:
        ctx = _context(config, s.cluster)
        should = (
            ""
            if primary is None
            else "  # should exist"
            if s.cluster == primary
            else "  # should NOT exist"
        )
        if pvc is not None:
            out.append(f"kubectl --context={ctx} -n {pvc.namespace} get pvc {pvc.name}{should}")
            out.append(
                f"kubectl --context={ctx} -n {pvc.namespace} get volumereplication "
                f"{pvc.name}{should}"
            )
        if pv is not None:
            out.append(f"kubectl --context={ctx} get pv {pv.name}{should}")
        role = (
            ""
            if primary is None
            else (", up+stopped (primary)" if s.cluster == primary else ", up+replaying")
        )
        out.append(
            f"rbd mirror image status {view.id.pool}/{view.id.image}  # on {s.cluster}'s Ceph{role}"
        )
    return tuple(out)


def _context(config: Config, cluster: str) -> str:
    c = config.cluster(cluster)
    return c.context or c.name
