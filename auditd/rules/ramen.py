"""Rules on what Ramen says of an application: its VolumeReplicationGroup on a managed cluster,
its DRPlacementControl (on the hub, or wherever it is watched).

Ramen's own alert (WorkloadUnprotected) is computed on the hub from the DRPC's Protected
condition, which walks the VRG's conditions; a team without the hub's Prometheus never sees it,
and it goes stale across an action (RamenDR/ramen#2811). Here the VRG's own conditions are read
where the VRG lives, next to what Ceph says of its volumes.

Each finding's subject is the Ramen object judged (cluster/Kind/namespace/name).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from auditd import durations
from auditd.config import PairConfig
from auditd.inventory.inventory import ObjectKey
from auditd.rules import label_selector
from auditd.rules.builtin import replication_interval
from auditd.rules.define import (
    CHECK_IMAGE,
    Facts,
    JudgeObject,
    keys_rule,
    new_finding,
    object_finding,
    object_rule,
    side_evidence,
    volume_rule,
)
from auditd.rules.model import UNKNOWN, Rule, RuleContext, RuleWords, Severity, Verdict
from auditd.rules.views import PVC, VR, VolumeId, VolumeView, not_current
from auditd.sources.kube.kinds import DR_CLUSTER, DRPC, VRG

# The VRG conditions that say the application's data is protected, in the order Ramen weighs
# them for the DRPC's Protected condition (internal/controller/protected_condition.go).
PROTECTION = ("DataReady", "DataProtected", "ClusterDataProtected")
# False for these reasons is Ramen at work (a new VRG, a resync after a failover, which can take
# hours for a big image): not known to be protected, not known to be failing either. Errors
# (Error, UnknownError, UploadError) are failing. (Ramen's docs/vrg-status-conditions.md.)
_UNDER_WAY = frozenset({"Initializing", "Progressing"})


@object_rule(
    VRG,
    RuleWords(
        "vrg-not-protected",
        "critical",
        timedelta(minutes=10),
        "A primary Ramen VolumeReplicationGroup says its data is not protected",
        "DataReady, DataProtected or ClusterDataProtected is False for an error (not while Ramen "
        "is Initializing or Progressing, which is unknown) on the VRG that Ramen keeps "
        "primary (spec.replicationState: primary), outside a DR window, for 10 minutes: Ramen "
        "itself says the application's volumes or its cluster data (PV/PVC metadata in S3) are not "
        "protected, so a failover may come up without them. Ramen's WorkloadUnprotected alert "
        "(10 minutes, on the hub) says the same from the DRPC; this one needs no hub. A condition "
        "from an older generation of the VRG is not read.",
        "kubectl --context CLUSTER -n NAMESPACE get volumereplicationgroup NAME -o yaml "
        "(status.conditions, status.protectedPVCs)",
        reads=frozenset(),  # the VRG's own conditions
    ),
)
def vrg_not_protected(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    if facts.get("replicationState") != "primary":
        return None  # a secondary VRG's conditions mean other things
    if not_current(ctx.inventory, key.cluster):
        return UNKNOWN  # its cluster's watch is blind: last-known is not now
    said = {c: facts.get(f"condition.{c}") for c in PROTECTION}
    false = [
        c
        for c, v in said.items()
        if v is not None and v.startswith("False") and v.partition("/")[2] not in _UNDER_WAY
    ]
    if false:
        return object_finding(
            rule,
            ctx,
            key,
            f"VolumeReplicationGroup {key.namespace}/{key.name} on {key.cluster} (primary): "
            + ", ".join(f"{c} is {said[c]}" for c in false),
            state=facts.get("state"),
            **{f"condition.{c}": v for c, v in said.items() if v is not None},
        )
    if any(v is None or not v.startswith("True") for v in said.values()):
        return UNKNOWN  # not reported yet, or Unknown: not known to be protected
    return None


@object_rule(
    VRG,
    RuleWords(
        "vrg-pvc-unprotected",
        "critical",
        timedelta(minutes=10),
        "A PVC a Ramen VolumeReplicationGroup selects is not in its protectedPVCs",
        "A mirrored volume's PVC matches the pvcSelector of the primary VRG of its namespace, but "
        "the VRG's status.protectedPVCs does not list it, for 10 minutes, outside a DR window: "
        "Ramen does not replicate it (an unbound claim, a StorageClass with no matching "
        "VolumeReplicationClass, a Ramen error), so a failover brings the application up without "
        "that volume's data, though every VRG condition may read True. Ten minutes cover Ramen "
        "listing a new PVC on its next reconcile.",
        "kubectl --context CLUSTER -n NAMESPACE get vrg NAME -o jsonpath='{.spec.pvcSelector} "
        "{.status.protectedPVCs[*].name}'; kubectl --context CLUSTER -n NAMESPACE get pvc --show-labels",
        reads=frozenset({(PVC, "labels")}),  # what its pvcSelector matches
    ),
)
def vrg_pvc_unprotected(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    if facts.get("replicationState") != "primary" or not members:
        return None
    listed = facts.get("protectedPVCs")
    if not_current(ctx.inventory, key.cluster) or listed is None:
        return UNKNOWN  # blind, or Ramen has not reported what it protects
    selected = _selected(ctx, key, facts.get("pvcSelector"), members)
    if selected is None:
        return UNKNOWN  # a selector auditd cannot read: no guess either way
    missing = sorted(set(selected) - set(listed.split(",")) - {""})
    if not missing:
        return None
    return object_finding(
        rule,
        ctx,
        key,
        f"VolumeReplicationGroup {key.namespace}/{key.name} on {key.cluster} selects "
        f"{len(missing)} PVC(s) it does not protect: " + ", ".join(missing),
        unprotected_pvcs=", ".join(missing),
        images=", ".join(f"{selected[n].pool}/{selected[n].image}" for n in missing),
        protected_pvcs=listed or "(none)",
        pvc_selector=facts.get("pvcSelector"),
    )


def _selected(
    ctx: RuleContext, key: ObjectKey, selector: str | None, members: tuple[VolumeView, ...]
) -> dict[str, VolumeId] | None:
    """The PVCs (namespace/name, with their volumes) of the VRG's namespaces on its cluster
    that its selector picks; None when the selector or a PVC's labels cannot be read."""
    try:
        parsed = json.loads(selector or "{}")
        picked: dict[str, VolumeId] = {}
        for view in members:
            pvc = view.side(key.cluster).pvc
            known = ctx.inventory.objects.get(pvc) if pvc is not None else None
            if pvc is None or known is None:
                continue
            labels = json.loads(known.facts.get("labels") or "{}")
            if not isinstance(parsed, dict) or not isinstance(labels, dict):
                return None
            if label_selector.matches(parsed, labels):
                picked[f"{pvc.namespace}/{pvc.name}"] = view.id
        return picked
    except (ValueError, label_selector.SelectorError):
        return None


# A DRPC at rest: the last action done. Anything else is an action under way (or paused).
_AT_REST = frozenset({"Deployed", "FailedOver", "Relocated"})


@keys_rule(
    RuleWords(
        "drpc-progression-stuck",
        "critical",
        timedelta(minutes=30),
        "A Ramen DRPlacementControl has been in an action for 30 minutes",
        "The DRPC's progression is not Completed (or its phase is not Deployed, FailedOver or "
        "Relocated) for 30 minutes: a failover or relocate that Ramen has not finished. The "
        "application may be down, or running with its volumes on one site and its placement on "
        "the other. Set a deadline of your own with [rules.drpc-progression-stuck] for.",
        "kubectl --context HUB -n NAMESPACE get drpc NAME -o yaml (status.progression, "
        "status.conditions); on the managed clusters: kubectl get vrg -n NAMESPACE",
        reads=frozenset(),  # the DRPC alone
    ),
)
def drpc_progression_stuck(
    rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]
) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for key in sorted({k for k in keys if k.kind == DRPC.kind}):
        known = ctx.inventory.objects.get(key)
        if known is None:
            out[str(key)] = None
            continue
        phase, progression = known.facts.get("phase"), known.facts.get("progression")
        if not_current(ctx.inventory, key.cluster):
            out[str(key)] = UNKNOWN
        elif phase is None and progression is None:
            out[str(key)] = UNKNOWN  # Ramen has not reported on it yet
        elif progression in (None, "Completed") and (phase is None or phase in _AT_REST):
            out[str(key)] = None
        else:
            # On a hub of one pair, the finding is that pair's (the scope that leads it).
            served = ctx.config.pairs_of(key.cluster)
            out[str(key)] = object_finding(
                rule,
                ctx,
                key,
                f"DRPlacementControl {key.namespace}/{key.name} on {key.cluster}: "
                f"{known.facts.get('action') or 'action'} in phase {phase or '?'}, progression "
                f"{progression or '?'}",
                pair=served[0].name if len(served) == 1 else None,
                **{k: v for k, v in known.facts.items() if v is not None},
            )
    return out


def _at_rest(facts: dict[str, str | None]) -> bool:
    phase, progression = facts.get("phase"), facts.get("progression")
    return progression in (None, "Completed") and phase in _AT_REST


def _resting(
    ctx: RuleContext, key: ObjectKey
) -> tuple[dict[str, str | None], tuple[VolumeView, ...]] | None:
    """A DRPC's facts and its volumes' views when it is at rest and none of its volumes is in
    a DR window; None when there is nothing to weigh now (its time, its placement are the last
    action's until it is done)."""
    known = ctx.inventory.objects.get(key)
    members = ctx.members(key)
    if known is None or not members or not _at_rest(known.facts):
        return None
    if any(v.id in ctx.switching for v in members):
        return None
    return known.facts, members


def _drpcs(ctx: RuleContext, keys: Iterable[ObjectKey]) -> list[ObjectKey]:
    """The DRPCs to judge: those a change touched, and those of the volumes judged (a probe
    cycle that refreshed their lag judges them too: Ramen's word may have stood still)."""
    return sorted(
        {k for k in keys if k.kind == DRPC.kind}
        | {k for v in ctx.volumes for k in ctx.joining(v.id) if k.kind == DRPC.kind}
    )


def resting_drpc_rule(
    rule_id: str,
    severity: Severity,
    for_: timedelta,
    summary: str,
    description: str,
    verify: str,
    reads: frozenset[tuple[str, str]],
) -> Callable[[JudgeObject], Rule]:
    """A rule judged per DRPC at rest, given its facts and its volumes' views (those a change
    touched, and those of the volumes judged); a DRPC in an action, or with a volume in a DR
    window, is None: what it says is the last action's until it is done."""

    def wrap(
        judge: JudgeObject,
    ) -> Rule:
        @keys_rule(RuleWords(rule_id, severity, for_, summary, description, verify, reads))
        def evaluate(rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
            out: dict[str, Verdict] = {}
            for key in _drpcs(ctx, keys):
                resting = _resting(ctx, key)
                out[str(key)] = None if resting is None else judge(rule, ctx, key, *resting)
            return out

        return evaluate

    return wrap


@resting_drpc_rule(
    "ramen-rpo-disagreement",
    "warning",
    timedelta(minutes=15),
    "Ramen and Ceph disagree on an application's last sync",
    "The DRPC's lastGroupSyncTime (what Ramen, its UI and its VolumeSynchronizationDelay alert "
    "take as the RPO) and Ceph's oldest last synced snapshot among the application's volumes "
    "differ by more than the tolerance (default: twice the volumes' schedulingInterval, at "
    "least 10 minutes). Ramen's time stands still when its VRG or DRPC stops being refreshed "
    "(RamenDR/ramen#1869, #2811): it then says protected while storage is behind, or the "
    "reverse. Never judged while the DRPC is in an action (its time is the last action's).",
    "kubectl --context HUB -n NAMESPACE get drpc NAME -o jsonpath='{.status.lastGroupSyncTime}'; "
    "rbd mirror image status POOL/IMAGE for each volume",
    frozenset({(VR, "volumeReplicationClass")}),  # its tolerance: the volumes' intervals
)
def ramen_rpo_disagreement(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    text = facts.get("lastGroupSyncTime")
    synced = [v.synced_at for v in members]
    if not text or ctx.now is None or any(t is None for t in synced):
        return UNKNOWN  # one side of the comparison is not known
    try:
        ramen = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return UNKNOWN
    # Ramen's time is ceph-csi's snapshot time, on the primary Ceph site's clock (as
    # lag-disagreement weighs a VR's); put it on auditd's when that clock is measured.
    primaries = {v.primary_cluster for v in members} - {None}
    primary = next(iter(primaries)) if len(primaries) == 1 else None
    clocks = ctx.inventory.records.clocks
    if primary is None or not all(clocks.measured(primary, v.id.pool) for v in members):
        return UNKNOWN
    ramen -= clocks.offset(primary)
    oldest = min(t for t in synced if t is not None)
    gap = abs(ramen - oldest)
    override = ctx.config.rules.get(rule.id)
    intervals = [
        i
        for v in members
        if (vr := v.side(primary).vr) is not None
        and (vr_known := ctx.inventory.objects.get(vr)) is not None
        and (i := replication_interval(ctx, primary, vr_known.facts)) is not None
    ]
    tolerance = (override.tolerance if override else None) or max(
        timedelta(minutes=10), 2 * max(intervals, default=timedelta(0))
    )
    if gap <= tolerance:
        return None
    return object_finding(
        rule,
        ctx,
        key,
        f"application {key.namespace}/{key.name}: Ramen's last group sync and Ceph's "
        f"oldest synced snapshot of its {len(members)} volume(s) differ by {durations.human(gap)}",
        pair=_pair_of(members),
        ramen_last_group_sync=text,
        ceph_oldest_synced_at=oldest.isoformat(),
        ramen_age=durations.human(ctx.now - ramen),
        ceph_lag=durations.human(ctx.now - oldest),
        tolerance=durations.human(tolerance),
    )


# Where a DRPC at rest says its application runs: the phase names the action last done.
def _placed_on(facts: dict[str, str | None]) -> str | None:
    if facts.get("phase") == "FailedOver":
        return facts.get("failoverCluster")
    return facts.get("preferredCluster")


@resting_drpc_rule(
    "drpc-placement-disagrees",
    "warning",
    timedelta(minutes=5),
    "Ramen places an application where its images are not primary",
    "The DRPC is at rest (its action Completed) and names the cluster the application runs on "
    "(failoverCluster after a failover, else preferredCluster), but Ceph's settled records put "
    "some of its volumes' primary images on the other cluster: the application runs on "
    "replicas it cannot write, or Ramen and the storage went separate ways during an action. "
    "Five minutes cover records catching up after the action (one rbd-mirror rewrite, 30 s). "
    "Ramen's cluster names are matched to auditd's by clusters.ramen_name.",
    "kubectl --context HUB -n NAMESPACE get drpc NAME -o yaml (spec, status.phase); "
    "rbd mirror image status POOL/IMAGE on both sites for each volume",
    frozenset(),  # the DRPC and its volumes' views
)
def drpc_placement_disagrees(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    placed = _placed_on(facts)
    pairs = {p.name: p for p in ctx.config.pairs}
    # Each volume's pair's cluster of that name (a hub may serve several pairs).
    targets = {
        v.id: ctx.config.cluster_named_by_ramen(pairs[v.id.pair], placed) if placed else None
        for v in members
    }
    if any(t is None for t in targets.values()):
        return UNKNOWN  # no placement yet, or a name auditd cannot place
    elsewhere = [v for v in members if v.primary_cluster not in (None, targets[v.id])]
    if not elsewhere:
        return UNKNOWN if any(v.primary_cluster is None for v in members) else None
    return object_finding(
        rule,
        ctx,
        key,
        f"application {key.namespace}/{key.name}: Ramen places it on {placed}, but "
        f"{len(elsewhere)} of its {len(members)} volume(s) are primary on "
        + ", ".join(sorted({str(v.primary_cluster) for v in elsewhere})),
        pair=_pair_of(members),
        placed_on=placed,
        phase=facts.get("phase"),
        volumes_elsewhere=", ".join(f"{v.id.pool}/{v.id.image}" for v in elsewhere),
    )


# A DRCluster whose storage access Ramen has cut (ceph-csi NetworkFence: its nodes' addresses
# blocklisted), asked for or done.
_FENCE_ASKED = frozenset({"Fenced", "ManuallyFenced"})


def _fenced(ctx: RuleContext, pair: PairConfig) -> dict[str, ObjectKey] | None:
    """The pair's clusters its hub's DRClusters say are fenced, with the DRCluster saying it;
    None when the hub's watch is blind and it has DRClusters (a fence may be unseen)."""
    if not pair.hub:
        return {}
    keys = ctx.inventory.keys_of(pair.hub, DR_CLUSTER.kind)
    if keys and not_current(ctx.inventory, pair.hub):
        return None
    fenced: dict[str, ObjectKey] = {}
    for key in keys:
        facts = ctx.inventory.objects[key].facts
        if facts.get("clusterFence") in _FENCE_ASKED or facts.get("phase") == "Fenced":
            cluster = ctx.config.cluster_named_by_ramen(pair, key.name)
            if cluster is not None:
                fenced[cluster] = key
    return fenced


@volume_rule(
    RuleWords(
        "primary-on-fenced-cluster",
        "critical",
        timedelta(minutes=10),
        "A volume is primary only on a cluster Ramen has fenced",
        "The pair's Ramen hub has a DRCluster fenced (spec.clusterFence Fenced or ManuallyFenced, "
        "or status.phase Fenced), and Ceph's settled records put this volume's one primary image "
        "on that cluster, outside a DR window, for 10 minutes: its nodes can no longer reach the "
        "storage, so the application cannot write, and it has not been failed over. Fencing is "
        "the first step of a failover: the DRPC's action opens the DR window. Ramen's cluster "
        "names are matched to auditd's by clusters.ramen_name.",
        "kubectl --context HUB get drcluster NAME -o yaml (spec.clusterFence, status.phase); "
        f"kubectl --context HUB get drpc -A; {CHECK_IMAGE}",
        reads=frozenset(),  # its view and the hub's DRClusters
    ),
)
def primary_on_fenced_cluster(rule: Rule, ctx: RuleContext, view: VolumeView) -> Verdict:
    pair = ctx.config.pair_named(view.id.pair)
    fenced = ctx.derived("fenced", pair.name, lambda: _fenced(ctx, pair))
    if fenced is None:
        return UNKNOWN  # the hub is blind: whether a cluster is fenced is not known now
    if not fenced or ctx.in_window(view) or view.id in ctx.switching:
        return None
    primary = view.primary_cluster
    if primary is None:
        # Both primary (split-brain says so) or none (a window) is not this; not settled is.
        return None if view.settled else UNKNOWN
    drcluster = fenced.get(primary)
    if drcluster is None:
        return None
    facts = ctx.inventory.objects[drcluster].facts
    return new_finding(
        rule,
        str(view.id),
        f"{view.id.pool}/{view.id.image} is primary only on {primary}, which Ramen's DRCluster "
        f"{drcluster.name} says is fenced: its application cannot write there",
        primary,
        ctx,
        drcluster=str(drcluster),
        cluster_fence=facts.get("clusterFence"),
        drcluster_phase=facts.get("phase"),
        **side_evidence(ctx, view),
    )


def _pair_of(members: tuple[VolumeView, ...]) -> str | None:
    """The pair of an application's volumes (None if a hub's DRPC spans several)."""
    pairs = {v.id.pair for v in members}
    return next(iter(pairs)) if len(pairs) == 1 else None


RULES: tuple[Rule, ...] = (
    vrg_not_protected,
    vrg_pvc_unprotected,
    drpc_progression_stuck,
    ramen_rpo_disagreement,
    drpc_placement_disagrees,
    primary_on_fenced_cluster,
)
