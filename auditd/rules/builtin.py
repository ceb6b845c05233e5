"""The built-in rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from auditd.inventory.inventory import ObjectKey
from auditd.rules.model import Finding, Rule, RuleContext
from auditd.sources.kube.health import AUDIT_STREAM

PVC_KIND = "PersistentVolumeClaim"


def _pvc_on_secondary(ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Finding | None]:
    out: dict[str, Finding | None] = {}
    for key in keys:
        if key.kind != PVC_KIND:
            continue
        subject = str(key)
        known = ctx.inventory.objects.get(key)
        if known is None or ctx.role_of(key.cluster) != "secondary":
            out[subject] = None
            continue
        pair = ctx.config.pair_of(key.cluster)
        out[subject] = Finding(
            rule=PVC_ON_SECONDARY.id,
            subject=subject,
            severity=PVC_ON_SECONDARY.severity,
            summary=(
                f"PVC {key.namespace}/{key.name} exists on {key.cluster}, "
                "which is configured as the DR secondary"
            ),
            cluster=key.cluster,
            pair=pair.name if pair else None,
            evidence={
                "cluster": key.cluster,
                "role": "secondary",
                "namespace": key.namespace,
                "name": key.name,
                **{k: v for k, v in known.facts.items() if v is not None},
            },
        )
    return out


PVC_ON_SECONDARY = Rule(
    id="pvc-on-secondary",
    severity="warning",
    for_=timedelta(0),
    summary="A PVC exists on the DR secondary",
    description=(
        "During normal replication the PVC, PV and VolumeReplication exist only where the RBD "
        "image is primary. A PVC on the secondary either binds to a read-only replica or "
        "provisions a new, unreplicated image; on failover it collides with the real one."
    ),
    remediation=(
        "kubectl --context SECONDARY -n NAMESPACE get pvc NAME -o yaml; "
        "rbd mirror image status POOL/IMAGE on both sites"
    ),
    evaluate=_pvc_on_secondary,
)


def _audit_blind_spot(ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Finding | None]:
    out: dict[str, Finding | None] = {}
    for cluster in sorted({k.cluster for k in keys if k.kind == AUDIT_STREAM}):
        blind = sorted(
            k.name
            for k in ctx.inventory.keys_of(cluster, AUDIT_STREAM)
            if ctx.inventory.objects[k].facts.get("state") == "blind"
        )
        subject = f"cluster/{cluster}"
        if not blind:
            out[subject] = None
            continue
        pair = ctx.config.pair_of(cluster)
        out[subject] = Finding(
            rule=AUDIT_BLIND_SPOT.id,
            subject=subject,
            severity=AUDIT_BLIND_SPOT.severity,
            summary=(
                f"auditd cannot watch {', '.join(blind)} on {cluster}: "
                "its DR state there is unknown"
            ),
            cluster=cluster,
            pair=pair.name if pair else None,
            evidence={
                "cluster": cluster,
                "blind_kinds": ", ".join(blind),
                "blind_after": str(ctx.config.watch.blind_spot_after),
            },
        )
    return out


AUDIT_BLIND_SPOT = Rule(
    id="audit-blind-spot",
    severity="critical",
    for_=timedelta(0),  # the stream state already waited watch.blind_spot_after
    summary="auditd cannot see a cluster",
    description=(
        "A watch stream has not been connected for longer than watch.blind_spot_after. Until "
        "it recovers, nothing on that cluster is being audited: unknown is not healthy."
    ),
    remediation="auditd status; kubectl --context CLUSTER auth can-i list persistentvolumeclaims -A",
    evaluate=_audit_blind_spot,
)

BUILTIN_RULES: tuple[Rule, ...] = (PVC_ON_SECONDARY, AUDIT_BLIND_SPOT)
