"""Rules on what Ramen says of an application on a managed cluster: its VolumeReplicationGroup.

Ramen's own alert (WorkloadUnprotected) is computed on the hub from the DRPC's Protected
condition, which walks the VRG's conditions; a team without the hub's Prometheus never sees it,
and it goes stale across an action (RamenDR/ramen#2811). Here the VRG's own conditions are read
where the VRG lives, next to what Ceph says of its volumes.

Each finding's subject is the VRG (cluster/VolumeReplicationGroup/namespace/name).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from auditd.inventory.inventory import ObjectKey
from auditd.rules.builtin import _finding, keys_rule
from auditd.rules.model import UNKNOWN, Rule, RuleContext, Verdict
from auditd.rules.views import not_current
from auditd.sources.kube.kinds import VRG

# The VRG conditions that say the application's data is protected, in the order Ramen weighs
# them for the DRPC's Protected condition (internal/controller/protected_condition.go).
PROTECTION = ("DataReady", "DataProtected", "ClusterDataProtected")


def _vrgs(ctx: RuleContext, keys: Iterable[ObjectKey]) -> list[ObjectKey]:
    """The VRGs to judge: those a change touched, and those of the volumes it touched."""
    found = {k for k in keys if k.kind == VRG.kind}
    found |= {s.vrg for v in ctx.volumes for s in v.sides if s.vrg is not None}
    return sorted(found)


@keys_rule(
    "vrg-not-protected",
    "critical",
    timedelta(minutes=10),
    "A primary Ramen VolumeReplicationGroup says its data is not protected",
    "DataReady, DataProtected or ClusterDataProtected is False on the VRG that Ramen keeps "
    "primary (spec.replicationState: primary), outside a DR window, for 10 minutes: Ramen "
    "itself says the application's volumes or its cluster data (PV/PVC metadata in S3) are not "
    "protected, so a failover may come up without them. Ramen's WorkloadUnprotected alert "
    "(10 minutes, on the hub) says the same from the DRPC; this one needs no hub. A condition "
    "from an older generation of the VRG is not read.",
    "kubectl --context CLUSTER -n NAMESPACE get volumereplicationgroup NAME -o yaml "
    "(status.conditions, status.protectedPVCs)",
)
def vrg_not_protected(
    rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]
) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for key in _vrgs(ctx, keys):
        known = ctx.inventory.objects.get(key)
        if known is None or known.facts.get("replicationState") != "primary":
            out[str(key)] = None  # a secondary VRG's conditions mean other things
            continue
        if any(v.id in ctx.switching for v in ctx.members(key)):
            out[str(key)] = None  # an action in progress: Ramen's conditions move with it
            continue
        if not_current(ctx.inventory, key.cluster):
            out[str(key)] = UNKNOWN  # its cluster's watch is blind: last-known is not now
            continue
        said = {c: known.facts.get(f"condition.{c}") for c in PROTECTION}
        false = [c for c, v in said.items() if v is not None and v.startswith("False")]
        if false:
            out[str(key)] = _finding(
                rule,
                str(key),
                f"VolumeReplicationGroup {key.namespace}/{key.name} on {key.cluster} (primary): "
                + ", ".join(f"{c} is {said[c]}" for c in false),
                key.cluster,
                ctx,
                cluster=key.cluster,
                namespace=key.namespace,
                name=key.name,
                state=known.facts.get("state"),
                **{f"condition.{c}": v for c, v in said.items() if v is not None},
            )
        elif any(v is None or not v.startswith("True") for v in said.values()):
            out[str(key)] = UNKNOWN  # not reported yet, or Unknown: not known to be protected
        else:
            out[str(key)] = None
    return out


RULES: tuple[Rule, ...] = (vrg_not_protected,)
