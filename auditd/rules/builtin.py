"""The built-in rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from auditd.inventory.inventory import ObjectKey
from auditd.rules.model import Finding, Rule, RuleContext

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

BUILTIN_RULES: tuple[Rule, ...] = (PVC_ON_SECONDARY,)
