"""`auditd preflight`: go or no-go for failing each volume over (or relocating it) to a target
cluster right now, and for each application (the VRG, else the DRPC, that groups volumes), with
every reason named, its evidence and the command that verifies it by hand. Pure: judged on
the same Seen as `auditd check` (judge.assess), so its verdicts are the daemon's rules'.

A reason is go (True), no-go (False) or not seen (None): one not seen is never a go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from auditd import durations
from auditd.check.judge import Seen, wanted
from auditd.config import Config
from auditd.inventory.inventory import ObjectKey
from auditd.inventory.rbd_facts import RBD_POOL
from auditd.rules.model import Finding, Unknown
from auditd.rules.views import DRPC_MOVING, PVC, VR, Side, VolumeView
from auditd.sources.kube.health import AUDIT_STREAM
from auditd.sources.kube.kinds import STORAGE_CLASS, VRC

EXIT_GO, EXIT_NO_GO, EXIT_UNSEEN = 0, 1, 3


@dataclass(frozen=True)
class Reason:
    check: str
    ok: bool | None  # None: could not be seen
    evidence: str
    verify: str


@dataclass(frozen=True)
class Decision:
    volume: str
    application: str | None
    source: str | None  # the image's primary now (storage truth), None if not known
    target: str | None
    reasons: tuple[Reason, ...]

    @property
    def go(self) -> bool | None:
        if any(r.ok is False for r in self.reasons):
            return False
        if any(r.ok is None for r in self.reasons):
            return None
        return True


@dataclass(frozen=True)
class Preflight:
    at: str
    decisions: tuple[Decision, ...]
    unseen: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def applications(self) -> dict[str, bool | None]:
        """An application goes only when every one of its volumes goes."""
        out: dict[str, bool | None] = {}
        for d in self.decisions:
            if d.application is None:
                continue
            before = out.get(d.application, True)
            out[d.application] = (
                False
                if before is False or d.go is False
                else None
                if before is None or d.go is None
                else True
            )
        return out

    @property
    def exit_code(self) -> int:
        if any(d.go is False for d in self.decisions):
            return EXIT_NO_GO
        if self.unseen or any(d.go is None for d in self.decisions) or not self.decisions:
            return EXIT_UNSEEN
        return EXIT_GO


def preflight(
    config: Config,
    seen: Seen,
    at: datetime,
    unseen: tuple[str, ...],
    to: str | None = None,
    pair: str | None = None,
    namespace: str | None = None,
    storage_classes: bool = True,
) -> Preflight:
    """``storage_classes``: whether they were looked at (a stored history has none: that
    reason is left out, and the output says so)."""
    decisions = [
        _decide(config, seen, view, at, to, storage_classes)
        for vid, view in sorted(seen.views.items())
        if wanted(view, pair, namespace) and _has_workload(view)
    ]
    notes = () if storage_classes else ("StorageClasses are not in the history: not checked",)
    return Preflight(at.isoformat(), tuple(decisions), unseen, notes)


def _has_workload(view: VolumeView) -> bool:
    """A volume something uses: a PVC or VR on a side. Images nobody claims are not failed
    over by anyone (`auditd check` still judges them)."""
    return any(s.pvc is not None or s.vr is not None for s in view.sides)


def _decide(
    config: Config,
    seen: Seen,
    view: VolumeView,
    at: datetime,
    to: str | None,
    storage_classes: bool = True,
) -> Decision:
    source = view.primary_cluster
    target = to or (view.peer(source).cluster if source is not None else None)
    image = f"{view.id.pool}/{view.id.image}"
    status = f"rbd mirror image status {image}"
    if target is None or target not in {s.cluster for s in view.sides}:
        why = (
            f"{to} is not a cluster of pair {view.id.pair}"
            if to is not None
            else "no primary image known (records not settled, or not probed): no target"
        )
        reasons: tuple[Reason, ...] = (
            Reason("target", None if to is None else False, why, status),
        )
        return Decision(str(view.id), _application(seen, view), source, target, reasons)
    t = view.side(target)
    checks: list[Callable[[], Reason]] = [
        lambda: _not_switching(seen, view, status),
        lambda: _rule_holds(seen, "split-brain", view, "no-split-brain", status),
        lambda: _target_is_replica(t, source, target, status),
        lambda: _rule_holds(seen, "rpo-exceeded", view, "rpo", _lag_text(view, at)),
        lambda: _target_clean(config, seen, view, t),
        lambda: _target_vrc(config, seen, view, t),
        *([lambda: _target_storage_class(config, seen, view, t)] if storage_classes else []),
        lambda: _rbd_mirror_up(seen, view),
        *([lambda: _drpc_allows(seen, view)] if _drpcs(seen, view) else []),
    ]
    return Decision(
        str(view.id), _application(seen, view), source, target, tuple(c() for c in checks)
    )


def _not_switching(seen: Seen, view: VolumeView, status: str) -> Reason:
    if view.id in seen.switching:
        phases = f", DRPC {', '.join(view.drpc_phases)}" if view.drpc_phases else ""
        return Reason("no-switch-in-progress", False, f"a switch is in progress{phases}", status)
    return Reason("no-switch-in-progress", True, "no switch in progress", status)


def _rule_holds(seen: Seen, rule_id: str, view: VolumeView, check: str, evidence: str) -> Reason:
    """A rule's verdict on the volume, as the daemon would give it now."""
    rule = seen.rules.get(rule_id)
    verify = rule.remediation if rule is not None else ""
    verdict = seen.verdicts.get((rule_id, str(view.id)))
    if isinstance(verdict, Finding):
        return Reason(check, False, verdict.summary, verify)
    if isinstance(verdict, Unknown):
        return Reason(check, None, f"{rule_id}: not known ({evidence})", verify)
    return Reason(check, True, evidence or f"{rule_id}: ok", verify)


def _lag_text(view: VolumeView, at: datetime) -> str:
    synced = view.synced_at
    return f"last synced {durations.human(at - synced)} ago" if synced else ""


def _target_is_replica(t: Side, source: str | None, target: str, status: str) -> Reason:
    verify = f"{status}  # on {target}'s Ceph"
    if t.image is None:
        if not t.storage_known:
            return Reason("target-replica", None, f"{target}'s Ceph not probed", verify)
        return Reason("target-replica", False, f"no image on {target}: nothing to promote", verify)
    if source == target:
        return Reason("target-replica", False, f"already primary on {target}", verify)
    state = str(t.image.get("state"))
    if not t.storage_known:
        return Reason("target-replica", None, f"{target}'s probe is not ok", verify)
    return Reason(
        "target-replica",
        state == "up+replaying",
        f"{target}'s image is {state} ({t.image.get('description') or '-'})",
        verify,
    )


def _target_clean(config: Config, seen: Seen, view: VolumeView, t: Side) -> Reason:
    """Nothing for it on the target yet: its PVC, PV or VR, linked to the image there or
    (a stray PVC with no PV of its own) of the same namespace and name as the source's."""
    ctx = config.cluster(t.cluster).context or t.cluster
    there = [k for k in (t.pvc, t.pv, t.vr) if k is not None]
    for s in view.sides:
        if s.cluster == t.cluster or s.pvc is None:
            continue
        for kind in (PVC, VR):
            key = ObjectKey(t.cluster, kind, s.pvc.namespace, s.pvc.name)
            if key in seen.inventory.objects and key not in there:
                there.append(key)
    verify = f"kubectl --context={ctx} get pvc,volumereplication -A; kubectl --context={ctx} get pv"
    if t.blind:
        return Reason("target-clean", None, f"{t.cluster} cannot be seen", verify)
    if there:
        names = ", ".join(f"{k.kind} {_name(k)}" for k in there)
        return Reason("target-clean", False, f"already on {t.cluster}: {names}", verify)
    return Reason("target-clean", True, f"no PVC, PV or VR for it on {t.cluster}", verify)


def _named(seen: Seen, keys: list[ObjectKey | None], fact: str) -> set[str]:
    """The classes these objects name (a VR its VolumeReplicationClass, a PVC its
    StorageClass)."""
    out = set()
    for key in keys:
        known = seen.inventory.objects.get(key) if key is not None else None
        if known is not None and known.facts.get(fact):
            out.add(str(known.facts[fact]))
    return out


def _target_vrc(config: Config, seen: Seen, view: VolumeView, t: Side) -> Reason:
    """The VolumeReplicationClass the volume's VR names exists on the target (else the new
    primary's VR cannot be created)."""
    ctx = config.cluster(t.cluster).context or t.cluster
    names = _named(seen, [s.vr for s in view.sides], "volumeReplicationClass")
    verify = f"kubectl --context={ctx} get volumereplicationclass"
    if t.blind:
        return Reason("target-vrc", None, f"{t.cluster} cannot be seen", verify)
    have = {k.name for k in seen.inventory.keys_of(t.cluster, VRC.kind)}
    if not names:
        return Reason("target-vrc", None, "no VolumeReplication names a class", verify)
    missing = sorted(names - have)
    if missing:
        return Reason(
            "target-vrc", False, f"VolumeReplicationClass {', '.join(missing)} not on {t.cluster}",
            verify,
        )  # fmt: skip
    return Reason("target-vrc", True, f"VolumeReplicationClass {', '.join(sorted(names))}", verify)


def _target_storage_class(config: Config, seen: Seen, view: VolumeView, t: Side) -> Reason:
    """The StorageClass the volume's PVC names exists on the target (the PVC that failover
    creates there names it too)."""
    ctx = config.cluster(t.cluster).context or t.cluster
    verify = f"kubectl --context={ctx} get storageclass"
    names = _named(seen, [s.pvc for s in view.sides], "storageClassName")
    if not names:
        return Reason("target-storage-class", True, "the PVC names no StorageClass", verify)
    stream = seen.inventory.objects.get(ObjectKey(t.cluster, AUDIT_STREAM, "", STORAGE_CLASS.kind))
    listed = stream is not None and stream.facts.get("state") == "ok"
    have = {k.name for k in seen.inventory.keys_of(t.cluster, STORAGE_CLASS.kind)}
    missing = sorted(names - have)
    if missing and not listed:
        return Reason(
            "target-storage-class", None, f"{t.cluster}'s StorageClasses not listed", verify
        )
    if missing:
        return Reason(
            "target-storage-class", False, f"StorageClass {', '.join(missing)} not on {t.cluster}",
            verify,
        )  # fmt: skip
    return Reason("target-storage-class", True, f"StorageClass {', '.join(sorted(names))}", verify)


def _rbd_mirror_up(seen: Seen, view: VolumeView) -> Reason:
    verify = f"rbd mirror pool status {view.id.pool}  # on both sites"
    states = []
    for s in view.sides:
        pool = seen.inventory.objects.get(ObjectKey(s.cluster, RBD_POOL, "", view.id.pool))
        facts = pool.facts if pool else {}
        if facts.get("probe") != "ok":
            return Reason("rbd-mirror-up", None, f"{s.cluster}'s pool not probed", verify)
        states.append((s.cluster, facts.get("daemon_health")))
    down = [c for c, h in states if h != "OK"]
    evidence = ", ".join(f"{c}: daemons {h}" for c, h in states)
    return Reason("rbd-mirror-up", not down, evidence, verify)


def _drpcs(seen: Seen, view: VolumeView) -> list[ObjectKey]:
    """The volume's DRPCs (its namespace's, on its pair's hub too), still held."""
    return [k for k in view.drpcs if k in seen.inventory.objects]


def _drpc_allows(seen: Seen, view: VolumeView) -> Reason:
    """Ramen: the DRPC is not in a progression and says its peer is ready."""
    keys = _drpcs(seen, view)
    verify = " ; ".join(f"kubectl -n {k.namespace} get drpc {k.name} -o yaml" for k in keys)
    for k in keys:
        f = seen.inventory.objects[k].facts
        if f.get("phase") in DRPC_MOVING:
            return Reason("drpc-allows", False, f"DRPC {_name(k)} is {f.get('phase')}", verify)
        ready = str(f.get("condition.PeerReady") or "")
        if ready and not ready.startswith("True"):
            return Reason("drpc-allows", False, f"DRPC {_name(k)} PeerReady {ready}", verify)
    return Reason("drpc-allows", True, "no DRPC progression, peer ready", verify)


def _application(seen: Seen, view: VolumeView) -> str | None:
    """What groups the volume: its VRG, else its DRPC (namespace/name)."""
    vrg = next((s.vrg for s in view.sides if s.vrg is not None), None)
    if vrg is not None:
        return _name(vrg)
    drpcs = _drpcs(seen, view)
    return _name(drpcs[0]) if drpcs else None


def _name(key: ObjectKey) -> str:
    return f"{key.namespace}/{key.name}" if key.namespace else key.name
