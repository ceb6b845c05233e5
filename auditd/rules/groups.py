"""Rules on consistency groups (csi-addons VolumeGroupReplication), judged per group object.

A group's members are the PVCs its controller lists (its ``members`` fact); each member's volume
is judged by the volume rules as any other, and a PVC a group lists counts as protected
(``unprotected-volume``). What only the group as a whole can say is here: its members' images
are primary on different sites (the group is no longer one consistent unit), and the group
object stands where all its members' images are non-primary.

Each finding's subject is the group object (cluster/VolumeGroupReplication/namespace/name).
"""

from __future__ import annotations

from datetime import timedelta

from auditd.inventory.inventory import ObjectKey
from auditd.rules.define import CHECK_IMAGE, Facts, object_finding, object_rule, storage_role
from auditd.rules.model import UNKNOWN, Rule, RuleContext, RuleWords, Verdict
from auditd.rules.views import VolumeView
from auditd.sources.kube.kinds import VGR

_GET_GROUP = "kubectl --context CLUSTER -n NAMESPACE get volumegroupreplication NAME -o yaml"


@object_rule(
    VGR,
    RuleWords(
        "group-split",
        "critical",
        timedelta(minutes=2),
        "A consistency group's images are primary on different sites",
        "Some members of one VolumeGroupReplication have their image primary on one site and others "
        "on the other: the group no longer fails over as one crash-consistent unit, and the "
        "application's volumes are split between sites. (Two minutes cover records that lag a "
        "group's switch by up to one rbd-mirror rewrite.)",
        f"{_GET_GROUP}; {CHECK_IMAGE} for each member",
        reads=frozenset(),  # its members' views
    ),
)
def group_split(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    primaries = {v.id: v.primary_cluster for v in members}
    sites = {c for c in primaries.values() if c is not None}
    if len(sites) > 1:
        by_site = {
            site: ", ".join(
                f"{v.pool}/{v.image}" for v, c in sorted(primaries.items()) if c == site
            )
            for site in sorted(sites)
        }
        return object_finding(
            rule,
            ctx,
            key,
            f"group {key.namespace}/{key.name}: members primary on "
            + " and on ".join(f"{site} ({names})" for site, names in by_site.items()),
            **{f"{site}.primary": names for site, names in by_site.items()},
        )
    if any(c is None for c in primaries.values()) or not all(v.storage_known for v in members):
        return UNKNOWN  # a member's storage truth is not known (yet) on both sites
    return None


@object_rule(
    VGR,
    RuleWords(
        "group-on-secondary",
        "warning",
        timedelta(0),
        "A VolumeGroupReplication exists where its members' images are non-primary",
        "The group object is on a cluster where every member's image is non-primary, outside a DR "
        "window: the group's VolumeReplication work belongs with the primary. (A group with "
        "replicationState: secondary is Ramen or an operator cleaning up: not flagged.)",
        f"{_GET_GROUP}; {CHECK_IMAGE} for each member",
        reads=frozenset(),  # its own facts and its members' views
    ),
)
def group_on_secondary(
    rule: Rule, ctx: RuleContext, key: ObjectKey, facts: Facts, members: tuple[VolumeView, ...]
) -> Verdict:
    if not members or facts.get("replicationState") == "secondary":
        return None
    roles = [
        storage_role(
            v, next((s for s in v.sides if s.cluster == key.cluster), None), ctx, key.cluster
        )
        for v in members
    ]
    if any(r in ("primary", "window") for r in roles):
        return None
    if any(r is None for r in roles):
        return UNKNOWN
    return object_finding(
        rule,
        ctx,
        key,
        f"VolumeGroupReplication {key.namespace}/{key.name} exists on {key.cluster}, "
        f"where all {len(members)} of its members' images are non-primary",
        member_images=", ".join(f"{v.id.pool}/{v.id.image}" for v in members),
        **{k: v for k, v in facts.items() if v is not None},
    )


RULES: tuple[Rule, ...] = (group_split, group_on_secondary)
