"""The built-in rules. Each is a pure function of the facts it is given, with its name,
severity, for-duration, words and by-hand check right above it (define.py's `volume_rule`,
`keys_rule`; `_on_secondary` here); RULES at the end is their order, nothing more
(catalogue.py adds the group and Ramen rules).

Roles come from the storage truth first (which side's image is primary, as the probes see it);
the configured roles are the expectation, and decide only where the storage truth is not
probed at all. A side whose probe is failing, or a cluster whose watch is blind, makes the
verdicts that depend on it UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from auditd import durations
from auditd.inventory.inventory import ObjectKey
from auditd.inventory.rbd_facts import RBD_IMAGE, RBD_POOL
from auditd.rules.define import (
    CHECK_IMAGE,
    keys_rule,
    new_finding,
    side_evidence,
    storage_role,
    volume_rule,
)
from auditd.rules.model import UNKNOWN, Rule, RuleContext, RuleWords, Severity, Verdict
from auditd.rules.views import PV, PVC, VR, Side, VolumeId, VolumeView
from auditd.sources.kube.health import AUDIT_STREAM
from auditd.sources.kube.kinds import CEPH_BLOCK_POOL, VRC


def _reads(*facts: tuple[str, str]) -> frozenset[tuple[str, str]]:
    """The PVC/PV/VR facts a rule reads itself (Rule.reads; rules/narrow.py). frozenset() for
    a rule that reads none: its volume's view is all it judges."""
    return frozenset(facts)


# ------------------------------------------------------- objects on secondary


def _on_secondary(kind: str, attr: str, words: RuleWords) -> Rule:
    """An object of ``kind`` (the sides' ``attr``) where its image is non-primary."""
    noun = {PVC: "PVC", PV: "PV", VR: "VolumeReplication"}[kind]

    def evaluate(ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
        out: dict[str, Verdict] = {}

        def judge(key: ObjectKey, view: VolumeView | None) -> Verdict:
            known = ctx.inventory.objects.get(key)
            if known is None:
                return None
            if kind == VR and known.facts.get("replicationState") == "secondary":
                return None  # Ramen demotes VRs to secondary during cleanup: expected
            if ctx.in_window(view):
                return None  # a failover or relocate in progress: expected transients
            if ctx.awaiting_evidence(key, view):
                return UNKNOWN  # storage records older than the object: a probe is asked for
            side = view.side(key.cluster) if view else None
            role = storage_role(view, side, ctx, key.cluster)
            if role is None:
                return UNKNOWN
            if role != "secondary":
                return None
            where = f"{key.namespace}/{key.name}" if key.namespace else key.name
            truth = (
                "its image is non-primary"
                if view and side and side.storage_known
                else ("configured as the DR secondary")
            )
            return new_finding(
                rule,
                str(key),
                f"{noun} {where} exists on {key.cluster}, where {truth}",
                key.cluster,
                ctx,
                cluster=key.cluster,
                namespace=key.namespace or None,
                name=key.name,
                **{k: v for k, v in known.facts.items() if v is not None},
                **(side_evidence(ctx, view) if view else {}),
            )

        for key in keys:
            if key.kind == kind:
                # Not linked to an image (yet): judged as the volume whose claim of the same
                # name is on the peer, if there is one; else not known, never "secondary" by
                # configuration alone where Ceph is probed.
                out[str(key)] = judge(key, _claim_view(ctx, key))
        for view in ctx.volumes:
            for side in view.sides:
                key = getattr(side, attr)
                if key is not None:
                    out[str(key)] = judge(key, view)
        return out

    rule = words.rule(evaluate)
    return rule


pvc_on_secondary = _on_secondary(
    PVC,
    "pvc",
    RuleWords(
        "pvc-on-secondary",
        "warning",
        timedelta(0),
        "A PVC exists where the image is non-primary",
        "In steady state the PVC, PV and VolumeReplication exist only where the RBD image is primary. "
        "A PVC on the secondary binds a read-only replica or provisions an unreplicated image, and "
        "collides with the real one on failover.",
        f"kubectl --context CLUSTER -n NAMESPACE get pvc NAME -o yaml; {CHECK_IMAGE}",
        reads=frozenset(),
    ),
)


pv_on_secondary = _on_secondary(
    PV,
    "pv",
    RuleWords(
        "pv-on-secondary",
        "warning",
        timedelta(0),
        "A PV exists where the image is non-primary",
        "A PV bound to the non-primary replica outside a DR window.",
        f"kubectl --context CLUSTER get pv NAME -o yaml; {CHECK_IMAGE}",
        reads=frozenset(),
    ),
)


vr_on_secondary = _on_secondary(
    VR,
    "vr",
    RuleWords(
        "vr-on-secondary",
        "warning",
        timedelta(0),
        "A VolumeReplication exists where the image is non-primary",
        "A VolumeReplication on the secondary outside a DR window (Ramen's replicationState: secondary "
        "during cleanup is expected and not flagged).",
        f"kubectl --context CLUSTER -n NAMESPACE get volumereplication NAME -o yaml; {CHECK_IMAGE}",
        reads=_reads((VR, "replicationState")),
    ),
)


def _claim_view(ctx: RuleContext, key: ObjectKey) -> VolumeView | None:
    if key.kind not in (PVC, VR):
        return None
    known = ctx.inventory.objects.get(key)
    claim = key.name if key.kind == PVC else (known.facts.get("dataSource") if known else None)
    # Through the index (a scan of every view per key made one event cost O(volumes)); the
    # view must still hold that claim on another cluster, as it was judged.
    vid = ctx.peer_claim(key)
    view = ctx.views.get(vid) if vid is not None else None
    if view is not None and any(
        side.cluster != key.cluster
        and side.pvc is not None
        and (side.pvc.namespace, side.pvc.name) == (key.namespace, claim)
        for side in view.sides
    ):
        return view
    return None


# ------------------------------------------------------------ volume rules


@volume_rule(
    RuleWords(
        "k8s-objects-on-both",
        "warning",
        timedelta(minutes=2),
        "A PVC or VR for the same image on both clusters",
        "Both clusters hold Kubernetes objects for one mirrored image outside a DR window.",
        f"kubectl --context dr1 get pvc -A; kubectl --context dr2 get pvc -A; {CHECK_IMAGE}",
        reads=frozenset(),
    ),
)
def objects_on_both(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if any(s.blind for s in view.sides):
        return UNKNOWN
    if view.in_transition or ctx.in_window(view):
        return None
    a, b = view.sides
    both = [
        n
        for n, attr in (("PVC", "pvc"), ("VolumeReplication", "vr"))
        if getattr(a, attr) and getattr(b, attr)
    ]
    if not both:
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{' and '.join(both)} for image {view.id.pool}/{view.id.image} exist on both {a.cluster} and {b.cluster}",
        None,
        ctx,
        pair=view.id.pair,
        **side_evidence(ctx, view),
    )


def _drivers_both_primary(ctx: RuleContext, view: VolumeView) -> str | None:
    """Why both sides' VRs (or groups) say Primary, if they do; only VRs and groups both seen
    now: a lost site's last-known one says nothing of today."""
    drivers = [s.replicated_by for s in view.sides if not s.blind]
    states = [
        ctx.inventory.objects[k].facts.get("state")
        for k in drivers
        if k is not None and k in ctx.inventory.objects
    ]
    if len(states) != 2 or any(v != "Primary" for v in states):
        return None
    kinds_ = {k.kind for k in drivers if k is not None}
    if kinds_ == {VR}:
        return "both VolumeReplications are Primary"
    return f"both sides' {' and '.join(sorted(kinds_))} are Primary"


@volume_rule(
    RuleWords(
        "split-brain",
        "critical",
        timedelta(0),
        "Both sites think they are primary",
        "Both images primary (a forced promotion with the peer still primary), an up+error split-brain, or, "
        "where Ceph's records are not known (not probed, or a probe failing), both VolumeReplications (or "
        "the groups replicating the volume) Primary. Writes on both sides diverge: one side's data will be discarded.",
        f"{CHECK_IMAGE}; rbd info POOL/IMAGE (mirroring.primary on both sites)",
        reads=_reads((VR, "state")),
    ),
)
def split_brain(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if not view.confirmed:
        return UNKNOWN
    reasons = []
    undecided = False
    if view.both_primary:
        if view.settled:
            reasons.append("both images are primary")
        else:
            # One record predates the other's promotion: the demoted side's last word before
            # its demote, until rbd-mirror rewrites it (<= 30 s). A forced promotion keeps
            # both records saying primary after that; a planned one does not.
            undecided = True
    for s in view.sides:
        if (
            s.storage_known
            and s.image
            and s.image.get("state") == "up+error"
            and "split-brain" in (s.image.get("description") or "")
        ):
            reasons.append(f"{s.cluster} reports split-brain")
    if not view.storage_known:
        # Only where Ceph's records are not known: two clusters' watch events are not ordered
        # against each other, so a switch's new VR created as the old one is deleted reads as
        # both Primary for a batch (a 16 ms critical page in a drill). Where the records are
        # known they decide, and vr-on-secondary / group-on-secondary name a driver that stays
        # Primary on a non-primary image.
        both = _drivers_both_primary(ctx, view)
        if both is not None:
            reasons.append(both)
    if reasons:
        return new_finding(
            rule,
            str(view.id),
            f"Split brain on {view.id.pool}/{view.id.image}: {'; '.join(reasons)}",
            None,
            ctx,
            pair=view.id.pair,
            reasons="; ".join(reasons),
            **side_evidence(ctx, view),
        )
    if view.storage_known:
        return UNKNOWN if undecided else None  # the records decide, whatever a watch sees
    if any(s.blind for s in view.sides):
        return UNKNOWN  # a side's VR (or lack of one) is last-known: the VR reason is not known
    if not any(ctx.probed(s.cluster) for s in view.sides):
        return None  # the only reason observable without Ceph (the VRs) is observed gone
    return UNKNOWN


@volume_rule(
    RuleWords(
        "secondary-not-replaying",
        "warning",
        timedelta(minutes=5),
        "The secondary image is not up+replaying",
        "The non-primary side of a mirrored image is not replaying: data is not arriving there.",
        f"{CHECK_IMAGE}; ceph -s (is rbd-mirror running on the secondary site?)",
        reads=frozenset(),
    ),
)
def secondary_not_replaying(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if ctx.in_window(view):
        return None
    primary = view.primary_cluster
    if primary is None:
        return UNKNOWN if not view.storage_known else None
    secondary = view.peer(primary)
    if not secondary.storage_known:
        return UNKNOWN
    if secondary.image is None:
        return None  # image-missing-on-peer says this better
    state = secondary.image.get("state")
    if state == "up+replaying":
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image} on {secondary.cluster} (secondary) is {state}, not up+replaying",
        secondary.cluster,
        ctx,
        pair=view.id.pair,
        **side_evidence(ctx, view),
    )


@volume_rule(
    RuleWords(
        "primary-not-stopped",
        "warning",
        timedelta(minutes=5),
        "The primary image is not up+stopped",
        "The primary side of a mirrored image is not in its steady state (up+stopped, local image is primary).",
        CHECK_IMAGE,
        reads=frozenset(),
    ),
)
def primary_not_stopped(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if ctx.in_window(view):
        return None
    primary = view.primary_cluster
    if primary is None:
        return UNKNOWN if not view.storage_known else None
    side = view.side(primary)
    state = (side.image or {}).get("state")
    if state == "up+stopped":
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image} on {primary} (primary) is {state}, not up+stopped",
        primary,
        ctx,
        pair=view.id.pair,
        **side_evidence(ctx, view),
    )


@volume_rule(
    RuleWords(
        "image-missing-on-peer",
        "critical",
        timedelta(minutes=5),
        "A mirrored image is not on the peer",
        "The image is primary on one site and the peer's mirror status does not list it: there is no replica.",
        "rbd mirror pool status POOL --verbose (on both sites); rbd ls -l POOL",
        reads=frozenset(),
    ),
)
def image_missing_on_peer(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    primary = view.primary_cluster
    if primary is None:
        return UNKNOWN if not view.storage_known else None
    peer = view.peer(primary)
    if not peer.storage_known:
        return UNKNOWN
    if peer.image is not None:
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image} is primary on {primary} but not listed on {peer.cluster}",
        peer.cluster,
        ctx,
        pair=view.id.pair,
        **side_evidence(ctx, view),
    )


def _judged_primary(ctx: RuleContext, view: VolumeView) -> str | None:
    """The primary by storage truth where Ceph is probed; where it is not, the configured
    primary (the README's promise for the Kubernetes-only rules: they still work unprobed)."""
    if any(ctx.probed(s.cluster) for s in view.sides):
        return view.primary_cluster
    return next((s.cluster for s in view.sides if ctx.role_of(s.cluster) == "primary"), None)


def _primary_vr(ctx: RuleContext, view: VolumeView) -> tuple[Side, dict[str, str | None]] | None:
    primary = _judged_primary(ctx, view)
    if primary is None:
        return None
    side = view.side(primary)
    known = ctx.inventory.objects.get(side.vr) if side.vr else None
    return (side, known.facts) if known else None


def replication_interval(
    ctx: RuleContext, cluster: str, vr_facts: dict[str, str | None]
) -> timedelta | None:
    """The VolumeReplicationClass schedulingInterval of a VR ("1m", "12m", "1h", "1d")."""
    vrc = ctx.inventory.objects.get(
        ObjectKey(cluster, VRC.kind, "", vr_facts.get("volumeReplicationClass") or "")
    )
    text = vrc.facts.get("schedulingInterval") if vrc else None
    try:
        return durations.parse(text) if text else None
    except ValueError:
        return None


@volume_rule(
    RuleWords(
        "rpo-exceeded",
        "warning",
        timedelta(0),
        "Replication lag is past the RPO",
        "Storage-truth lag: now minus the last snapshot the secondary has synced. Warning past 2x the "
        "VolumeReplicationClass schedulingInterval, critical past 3x (like Ramen's "
        "VolumeSynchronizationDelay), or past rules.rpo-exceeded.rpo.",
        "rbd mirror image status POOL/IMAGE on the secondary (local_snapshot_timestamp); "
        "rbd mirror snapshot schedule status --pool POOL",
        reads=_reads((VR, "volumeReplicationClass")),
    ),
)
def rpo_exceeded(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if ctx.in_window(view):
        # Mid-switch the "secondary" is about to be primary (a planned switch syncs it with
        # the demotion snapshot) or just demoted, its record not yet carrying snapshot times:
        # lag says nothing until the window closes. A firing alert stays as it was.
        return UNKNOWN
    primary = view.primary_cluster
    if primary is None or ctx.now is None:
        return UNKNOWN if not view.storage_known or not view.settled else None
    secondary = view.peer(primary).cluster
    lag = ctx.inventory.records.behind(secondary, view.id.pool, view.id.image, ctx.now, primary)
    if lag is None or view.synced_at is None:
        # The secondary states no synced snapshot (not listed, or not snapshot-mode yet), or
        # the primary's clock (its snapshot times) is not yet measured against ours: lag cannot
        # be told; image-missing-on-peer and secondary-not-replaying speak to the rest.
        return UNKNOWN
    pv = _primary_vr(ctx, view)
    interval = replication_interval(ctx, primary, pv[1]) if pv else None
    record = view.peer(primary).record
    if interval is not None and record is not None and record.demoted_at is not None:
        first_due = record.demoted_at + interval
        if record.synced_at is None or record.synced_at < first_due:
            # After a switch the new primary's schedule takes its first snapshot up to one
            # interval later (measured on the lab: rbd_support picks a promoted image up at its
            # next scan): nothing newer can have synced before then, so lag counts from then.
            lag = min(lag, max(timedelta(0), ctx.now - first_due))
    override = ctx.config.rules.get(rule.id)
    rpo = override.rpo if override else None
    level: Severity | None = None
    limit = ""
    if interval is not None and lag > 3 * interval:
        level, limit = "critical", f"3 x schedulingInterval {interval}"
    elif interval is not None and lag > 2 * interval:
        level, limit = "warning", f"2 x schedulingInterval {interval}"
    if rpo is not None and lag > rpo and level is None:
        level, limit = "critical", f"the configured RPO {rpo}"
    if level is None:
        return None
    finding = new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image}: the secondary last synced {durations.human(lag)} ago, past {limit}",
        view.peer(primary).cluster,
        ctx,
        pair=view.id.pair,
        lag_seconds=int(lag.total_seconds()),
        synced_at=view.synced_at.isoformat(),
        interval=durations.compact(interval) if interval else None,
        rpo=durations.compact(rpo) if rpo else None,
        **side_evidence(ctx, view),
    )
    return replace(finding, severity=level)


@volume_rule(
    RuleWords(
        "lag-disagreement",
        "warning",
        timedelta(minutes=15),
        "VolumeReplication and Ceph disagree on the last sync",
        "The primary VR's lastSyncTime and Ceph's last synced snapshot differ by more than the "
        "tolerance (default: the schedulingInterval): one of them is not telling the truth.",
        "kubectl get volumereplication -o jsonpath='{.status.lastSyncTime}'; rbd mirror image status POOL/IMAGE",
        reads=_reads((VR, "lastSyncTime"), (VR, "volumeReplicationClass")),
    ),
)
def lag_disagreement(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    if ctx.in_window(view):
        return UNKNOWN  # as rpo-exceeded: lag means nothing mid-switch
    pv = _primary_vr(ctx, view)
    if pv is None or view.synced_at is None:
        return None
    side, facts = pv
    if side.blind:
        return UNKNOWN  # its VR's lastSyncTime is last-known, not current
    text = facts.get("lastSyncTime")
    if not text:
        return None
    try:
        vr_time = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return UNKNOWN
    # ceph-csi reports the secondary's local_snapshot_timestamp, which rbd-mirror copies from
    # the primary's snapshot (image_replayer/snapshot/Replayer.cc): the primary Ceph site's
    # clock, as is view.synced_at before it was moved onto ours. Unmeasured, neither can be.
    clocks = ctx.inventory.records.clocks
    if not clocks.measured(side.cluster, view.id.pool):
        return UNKNOWN
    vr_time -= clocks.offset(side.cluster)
    override = ctx.config.rules.get(rule.id)
    tolerance = (
        (override.tolerance if override else None)
        or replication_interval(ctx, side.cluster, facts)
        or timedelta(minutes=10)
    )
    gap = abs(vr_time - view.synced_at)
    if gap <= tolerance:
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image}: VR lastSyncTime and Ceph disagree by {durations.human(gap)}",
        side.cluster,
        ctx,
        pair=view.id.pair,
        vr_last_sync=text,
        ceph_synced_at=view.synced_at.isoformat(),
        tolerance=str(tolerance),
    )


@volume_rule(
    RuleWords(
        "vr-degraded",
        "warning",
        timedelta(minutes=5),
        "The primary's VolumeReplication is Degraded or not Completed",
        "Degraded=True or Completed=False on the VR where the image is primary (or, for a volume in "
        "a consistency group, on its VolumeGroupReplication). A secondary VR is Degraded while it "
        "resyncs: that is not flagged.",
        "kubectl -n NAMESPACE get volumereplication,volumegroupreplication NAME -o yaml "
        "(status.conditions)",
        reads=_reads((VR, "condition.*")),
    ),
)
def vr_degraded(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    # Only the primary's VR (or group): a healthy secondary is Degraded=True while it resyncs.
    primary = _judged_primary(ctx, view)
    if primary is None:
        return UNKNOWN
    side = view.side(primary)
    driver = side.replicated_by
    known = ctx.inventory.objects.get(driver) if driver else None
    if driver is None or known is None:
        return None
    if side.blind:
        return UNKNOWN
    facts = known.facts
    degraded = (facts.get("condition.Degraded") or "").startswith("True")
    incomplete = (facts.get("condition.Completed") or "").startswith("False")
    if not (degraded or incomplete):
        return None
    what = " and ".join(
        w for w, on in (("Degraded", degraded), ("not Completed", incomplete)) if on
    )
    return new_finding(
        rule,
        str(view.id),
        f"{driver.kind} {driver.namespace}/{driver.name} on {side.cluster} (primary) is {what}",
        side.cluster,
        ctx,
        pair=view.id.pair,
        **{k: v for k, v in facts.items() if k.startswith("condition.") and v is not None},
    )


def _awaiting_evidence(ctx: RuleContext, view: VolumeView) -> bool:
    """Any of the view's PVCs and VRs newer than the storage evidence it would be judged on."""
    return any(
        ctx.awaiting_evidence(key, view)
        for side in view.sides
        for key in (side.pvc, side.vr)
        if key is not None
    )


@volume_rule(
    RuleWords(
        "unprotected-volume",
        "warning",
        timedelta(minutes=5),
        "A mirrored volume has no VolumeReplication on its primary",
        "The image is mirrored and its PVC exists on the primary, but no VolumeReplication manages "
        "it and no VolumeGroupReplication lists it among its members: promotion and demotion will "
        "not be driven for it on failover.",
        "kubectl -n NAMESPACE get volumereplication,volumegroupreplication; "
        "rbd mirror image status POOL/IMAGE",
        reads=_reads((PVC, "storageClassName")),
    ),
)
def unprotected_volume(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    primary = _judged_primary(ctx, view)
    if primary is None:
        # Never mirrored at all: no site lists the image. A PVC of a storage class the pair
        # mirrors, with no VR, is then unprotected on whichever side holds it.
        if view.storage_known and not any(s.image for s in view.sides):
            if _awaiting_evidence(ctx, view):
                return UNKNOWN  # a probe from before the PVC cannot list its image
            pair = next((p for p in ctx.config.pairs if p.name == view.id.pair), None)
            classes = set(pair.mirrored_storage_classes) if pair else set()
            for side in view.sides:
                pvc = ctx.inventory.objects.get(side.pvc) if side.pvc else None
                if (
                    side.pvc
                    and pvc
                    and side.replicated_by is None
                    and pvc.facts.get("storageClassName") in classes
                ):
                    return new_finding(
                        rule,
                        str(view.id),
                        f"PVC {side.pvc.namespace}/{side.pvc.name} on {side.cluster} uses mirrored storage "
                        f"class {pvc.facts.get('storageClassName')} but has no VolumeReplication and its "
                        "image is not mirrored",
                        side.cluster,
                        ctx,
                        pair=view.id.pair,
                        namespace=side.pvc.namespace,
                        storage_class=pvc.facts.get("storageClassName"),
                    )
            return None
        return UNKNOWN if not view.storage_known else None
    side = view.side(primary)
    if side.blind:
        return UNKNOWN
    if side.replicated_by is not None or side.pvc is None:
        return None  # a VR, or a consistency group that lists the PVC, drives it
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image} is mirrored and its PVC {side.pvc.namespace}/{side.pvc.name} on "
        f"{primary} has no VolumeReplication and no VolumeGroupReplication lists it",
        primary,
        ctx,
        pair=view.id.pair,
        namespace=side.pvc.namespace,
        **side_evidence(ctx, view),
    )


@volume_rule(
    RuleWords(
        "image-not-mirrored",
        "critical",
        timedelta(minutes=2),
        "A protected volume's image is not mirrored at all",
        "A Bound PVC with a VolumeReplication uses an image that neither site's mirror status lists: "
        "the image was deleted or its mirroring disabled, so there is no replica. (A 2-minute "
        "for-duration covers a new volume whose mirroring the last probe has not seen yet.)",
        "rbd mirror image status POOL/IMAGE; rbd info POOL/IMAGE (mirroring); "
        "kubectl -n NAMESPACE get volumereplication NAME -o yaml",
        reads=_reads((PVC, "phase"), (VR, "replicationState")),
    ),
)
def image_not_mirrored(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    """A live, protected volume whose image is in neither site's mirror status: deleted, or
    mirroring disabled. The loss DR exists to prevent, and no other rule sees it (there is no
    primary image left to compare with)."""
    if not any(ctx.probed(s.cluster) for s in view.sides) or ctx.in_window(view):
        return None
    if not all(s.storage_known for s in view.sides):
        return UNKNOWN
    if any(s.image is not None for s in view.sides):
        return None
    if any(s.blind for s in view.sides):
        return UNKNOWN  # whether a live PVC uses it is known only from both clusters' now
    if _awaiting_evidence(ctx, view):
        return UNKNOWN  # a probe from before the PVC/VR cannot list its image: not news
    for side in view.sides:
        if side.pvc is None or side.replicated_by is None:
            continue  # no VR or group: unprotected-volume says it; no PVC: nothing uses it
        pvc = ctx.inventory.objects.get(side.pvc)
        vr = ctx.inventory.objects.get(side.replicated_by)
        if pvc is None or vr is None or pvc.facts.get("phase") != "Bound":
            continue
        if vr.facts.get("replicationState") == "secondary":
            continue
        return new_finding(
            rule,
            str(view.id),
            f"{view.id.pool}/{view.id.image} under PVC {side.pvc.namespace}/{side.pvc.name} on "
            f"{side.cluster} is not mirrored on either site (image deleted or mirroring disabled): "
            "this volume has no replica",
            side.cluster,
            ctx,
            pair=view.id.pair,
            namespace=side.pvc.namespace,
            vr_state=vr.facts.get("state"),
            **side_evidence(ctx, view),
        )
    return None


@volume_rule(
    RuleWords(
        "dr-window-overrun",
        "critical",
        timedelta(0),
        "A failover or relocate is taking too long",
        "A DR window (both sides demoted, or the primary's VR asking for secondary) has been open "
        "longer than rules.dr-window-overrun.deadline (default 30m): the workload may be down.",
        "kubectl get drpc -A; rbd mirror image status POOL/IMAGE (on both sites); "
        "rbd mirror image promote POOL/IMAGE on the intended primary",
        reads=frozenset(),
    ),
)
def dr_window_overrun(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    episode = ctx.windows.get(view.id)
    if episode is None or ctx.now is None:
        return None
    override = ctx.config.rules.get("dr-window-overrun")
    deadline = (override.deadline if override else None) or timedelta(minutes=30)
    took = ctx.now - episode.started_at
    if took <= deadline:
        return None
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image}: a failover/relocate from {episode.from_cluster or '?'} has been "
        f"in progress for {durations.human(took)}, past its {durations.human(deadline)} deadline",
        episode.from_cluster,
        ctx,
        pair=view.id.pair,
        started_at=episode.started_at.isoformat(),
        trigger=episode.trigger,
        steps=len(episode.steps),
        **side_evidence(ctx, view),
    )


@volume_rule(
    RuleWords(
        "old-primary-not-fenced",
        "warning",
        timedelta(0),
        "A failover left the unreachable old primary un-fenced",
        "The survivor was promoted while the old primary's site could not be seen (a lost site, "
        "a forced failover). The old side's image and PVC/PV/VR were primary when last seen: if it "
        "returns as it was, both sides write (split brain). Resolved when the old side is seen "
        "demoted by a record written after the failover, its PVC/PV deleted and its VR secondary.",
        "rbd mirror image status POOL/IMAGE on the old site (must not be primary); kubectl "
        "--context OLD get pvc,volumereplication -A; Ramen: kubectl get drcluster OLD -o yaml "
        "(spec.clusterFence)",
        reads=frozenset(),
    ),
)
def old_primary_not_fenced(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    """A failover done while the old primary was unreachable leaves it primary, with its PVC,
    PV and VR, wherever it is: the day it comes back un-fenced, both sides write. One finding
    per volume until the old side is seen demoted (by a record written after the failover)
    and cleaned up; the commands name the real objects as last seen."""
    episode = ctx.peer_lost.get(view.id)
    if episode is None or episode.from_cluster is None:
        return None
    old = view.side(episode.from_cluster)
    new = view.peer(episode.from_cluster)
    image = f"{view.id.pool}/{view.id.image}"
    steps = [
        f"fence {old.cluster} from the volume (Ramen: DRCluster spec.clusterFence: Fenced; or a "
        "NetworkFence), so its old workload cannot write",
        f"on {old.cluster}'s Ceph: rbd mirror image demote {image}",
        f"on {old.cluster}'s Ceph: rbd mirror image resync {image}",
    ]
    ctx_ = f"kubectl --context {old.cluster}"
    if old.vr is not None:
        steps.append(f"{ctx_} -n {old.vr.namespace} delete volumereplication {old.vr.name}")
    if old.pvc is not None:
        steps.append(f"{ctx_} -n {old.pvc.namespace} delete pvc {old.pvc.name}")
    if old.pv is not None:
        steps.append(f"{ctx_} delete pv {old.pv.name}")
    seen = "unreachable" if not old.storage_known else "still primary or not cleaned up"
    return new_finding(
        rule,
        str(view.id),
        f"{image} failed over to {new.cluster} while {old.cluster} was unreachable: "
        f"{old.cluster}'s image and objects were primary when last seen ({seen}); fence, demote "
        "and resync it before it serves again",
        old.cluster,
        ctx,
        pair=view.id.pair,
        failover_at=episode.started_at.isoformat(),
        old_side=old.cluster,
        todo="; ".join(steps),
        **side_evidence(ctx, view),
    )


# -------------------------------------------------------------- pool rules


@keys_rule(
    RuleWords(
        "pool-mirroring-unhealthy",
        "warning",
        timedelta(minutes=2),
        "Pool mirroring health is not OK",
        "The pool's mirror status summary (or the CephBlockPool's mirroringStatus) reports health or "
        "daemon health other than OK: rbd-mirror is down or images are in error.",
        "rbd mirror pool status POOL; ceph -s; kubectl -n rook-ceph get cephblockpool -o yaml",
        reads=frozenset(),
    ),
)
def pool_unhealthy(rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for key in keys:
        if key.kind not in (RBD_POOL, CEPH_BLOCK_POOL.kind):
            continue
        subject = str(key)  # rules/subjects.py reads it back as this key
        known = ctx.inventory.objects.get(key)
        if known is None:
            out[subject] = None
            continue
        f = known.facts
        if key.kind == RBD_POOL:
            if f.get("probe") != "ok":
                out[subject] = UNKNOWN
                continue
            health, daemon = f.get("health"), f.get("daemon_health")
        else:
            if f.get("mirroring.enabled") != "true" or f.get("mirroring.health") is None:
                out[subject] = None
                continue
            health, daemon = f.get("mirroring.health"), f.get("mirroring.daemon_health")
        if health == "OK" and daemon == "OK":
            out[subject] = None
            continue
        if key.kind == RBD_POOL and daemon == "OK" and _explained_by_switches(ctx, key):
            out[subject] = None  # images mid-switch: a failover of many volumes, not a fault
            continue
        out[subject] = new_finding(
            rule,
            subject,
            f"Mirroring of pool {key.name} on {key.cluster} is {health} (daemons {daemon})",
            key.cluster,
            ctx,
            health=health,
            daemon_health=daemon,
            image_health=f.get("image_health") or f.get("mirroring.image_health"),
            states=f.get("states") or f.get("mirroring.states"),
        )
    return out


def _explained_by_switches(ctx: RuleContext, pool: ObjectKey) -> bool:
    """Every image of the pool that is not healthy belongs to a volume in a DR window: the
    summary says WARNING because an application's volumes are being switched (a staggered
    relocate of many volumes can keep it so for longer than the rule's for-duration)."""
    pair = ctx.config.pair_of(pool.cluster)
    if pair is None or not ctx.switching:
        return False
    unhealthy = [
        k.name
        for k in ctx.inventory.keys_of(pool.cluster, RBD_IMAGE)
        if k.namespace == pool.name and ctx.inventory.objects[k].facts.get("class") != "healthy"
    ]
    return bool(unhealthy) and all(
        VolumeId(pair.name, pool.name, name) in ctx.switching for name in unhealthy
    )


@keys_rule(
    RuleWords(
        "ceph-clock-skew",
        "warning",
        timedelta(minutes=5),
        "A Ceph site's clock disagrees with auditd's",
        "The times a site's rbd-mirror writes in its mirror status are further from auditd's clock "
        "than one rewrite period explains. auditd moves that site's times onto its own clock (so "
        "lag, staleness and switches are still judged right), but csi-addons, Ramen and the "
        "snapshot schedules use the site's clock as it is.",
        "date -u on the Ceph hosts and the auditd pod; chronyc tracking; "
        "rbd mirror pool status POOL --verbose (compare last_update with the time now)",
        reads=frozenset(),
    ),
)
def ceph_clock_skew(rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for key in keys:
        if key.kind != RBD_POOL:
            continue
        subject = f"{key.cluster}/ceph-clock"
        known = ctx.inventory.objects.get(key)
        raw = known.facts.get("clock_offset") if known is not None else None
        if raw is None:
            out.setdefault(subject, None)
            continue
        try:
            offset = timedelta(seconds=float(raw))
        except ValueError:
            out[subject] = UNKNOWN
            continue
        way = "ahead of" if offset > timedelta(0) else "behind"
        out[subject] = new_finding(
            rule,
            subject,
            f"The Ceph clock of {key.cluster} is {durations.human(abs(offset))} {way} auditd's (from the "
            "times its rbd-mirror writes): its times are corrected by that much",
            key.cluster,
            ctx,
            offset_seconds=int(offset.total_seconds()),
            pool=key.name,
        )
    return out


# ---------------------------------------------------------------- blind spot


def failing_probes(ctx: RuleContext, cluster: str) -> list[tuple[str, str, datetime]]:
    """The pools of a cluster whose status probe has failed for probe.blind_after or longer:
    (pool, error kind, failing since)."""
    out = []
    for key in sorted(ctx.inventory.keys_of(cluster, RBD_POOL)):
        f = ctx.inventory.objects[key].facts
        since = f.get("probe_failing_since")
        if f.get("probe") != "failing" or not since or ctx.now is None:
            continue
        at = datetime.fromisoformat(since)
        if ctx.now - at >= ctx.config.probe.blind_after:
            out.append((key.name, str(f.get("probe_error") or "failing"), at))
    return out


@keys_rule(
    RuleWords(
        "audit-blind-spot",
        "critical",
        timedelta(0),
        "auditd cannot see a cluster",
        "A watch stream has not been connected for longer than watch.blind_spot_after. Until it recovers, "
        "nothing on that cluster is audited: unknown is not healthy.",
        "auditd status; kubectl --context CLUSTER auth can-i list persistentvolumeclaims -A",
        reads=frozenset(),
    ),
)
def audit_blind_spot(rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
    """A watch stream blind, or a Ceph probe failing: either way that cluster's DR state is
    not known, and nobody must read the silence as healthy."""
    out: dict[str, Verdict] = {}
    for cluster in sorted({k.cluster for k in keys if k.kind in (AUDIT_STREAM, RBD_POOL)}):
        blind = sorted(
            k.name
            for k in ctx.inventory.keys_of(cluster, AUDIT_STREAM)
            if ctx.inventory.objects[k].facts.get("state") == "blind"
        )
        probes = failing_probes(ctx, cluster)
        subject = f"cluster/{cluster}"
        if not blind and not probes:
            out[subject] = None
            continue
        what = []
        if blind:
            what.append(f"watch {', '.join(blind)}")
        if probes:
            what.append(
                "probe Ceph pool "
                + ", ".join(
                    f"{pool} ({error}, since {durations.human(ctx.now - since)})"
                    for pool, error, since in probes
                    if ctx.now
                )
            )
        out[subject] = new_finding(
            rule,
            subject,
            f"auditd cannot {' or '.join(what)} on {cluster}: its DR state there is unknown",
            cluster,
            ctx,
            cluster=cluster,
            blind_kinds=", ".join(blind) or None,
            blind_after=str(ctx.config.watch.blind_spot_after) if blind else None,
            failing_probes=", ".join(f"{pool}: {error}" for pool, error, _ in probes) or None,
        )
    return out


# -------------------------------------------------------------- the catalogue


RULES: tuple[Rule, ...] = (
    pvc_on_secondary,
    pv_on_secondary,
    vr_on_secondary,
    objects_on_both,
    split_brain,
    secondary_not_replaying,
    primary_not_stopped,
    image_missing_on_peer,
    image_not_mirrored,
    rpo_exceeded,
    lag_disagreement,
    vr_degraded,
    unprotected_volume,
    dr_window_overrun,
    old_primary_not_fenced,
    pool_unhealthy,
    ceph_clock_skew,
    audit_blind_spot,
)
# The rules a refreshed lag alone can change: a probe cycle re-evaluates only these.
LAG_RULES = frozenset({"rpo-exceeded", "lag-disagreement"})
