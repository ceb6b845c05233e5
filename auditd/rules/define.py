"""How a rule is defined and how it words what it finds: the decorators that keep a rule's
name, severity, for-duration and words beside its function (as Prometheus' AlertingRule keeps
them beside its Eval), the finding makers every rule module shares, and the one reading of a
side's role every "object on the wrong side" rule uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from auditd import durations
from auditd.inventory.inventory import ObjectKey
from auditd.rules.model import Finding, Rule, RuleContext, RuleWords, Verdict
from auditd.rules.views import Side, VolumeView, not_current
from auditd.sources.kube.kinds import Kind

# The by-hand check most rules share (their `verify` line).
CHECK_IMAGE = "rbd mirror image status POOL/IMAGE (on both sites)"


def storage_role(
    view: VolumeView | None, side: Side | None, ctx: RuleContext, cluster: str
) -> str | None:
    """'primary', 'secondary', 'window' (both demoted: a relocate in progress) or None (unknown).

    Where Ceph is probed, only settled storage records decide: the configured role never does,
    a failing probe or records still catching up with a demote/promote mean "not yet known",
    and so does an object whose link to an image (PVC -> PV -> image) has not arrived yet."""
    if side is not None and side.blind:
        return None
    if side is None and not_current(ctx.inventory, cluster):
        return None  # an object linked to no view: its own cluster's watch decides
    if ctx.probed(cluster):
        if view is None or side is None:
            return None
        peer = view.peer(cluster)
        if not (side.storage_known and peer.storage_known and view.settled):
            return None
        if view.in_transition:
            return "window"
        if side.primary is True and peer.primary is not True:
            return "primary"
        if side.primary is False and peer.primary is True:
            return "secondary"
        return None
    # No storage probes for this pair: the configured role is all we have.
    return ctx.role_of(cluster)


def new_finding(
    rule: Rule,
    subject: str,
    summary: str,
    where: str | None,
    ctx: RuleContext,
    **evidence: object,
) -> Finding:
    pair = ctx.config.pair_of(where) if where else None
    facts = {k: v for k, v in evidence.items() if v is not None}
    # A finding about both sides (split brain) has no one cluster, but still its pair.
    pair_name = pair.name if pair else (str(facts["pair"]) if facts.get("pair") else None)
    if "namespace" not in facts:
        # A volume's namespace is its PVC's (on either side): what silences and the report's
        # --namespace match on.
        claims = sorted(str(v) for k, v in facts.items() if k.endswith(".pvc") and "/" in str(v))
        if claims:
            facts["namespace"] = claims[0].split("/", 1)[0]
    return Finding(
        rule=rule.id,
        subject=subject,
        severity=rule.severity,
        summary=summary,
        cluster=where,
        pair=pair_name,
        evidence=facts,
    )


def object_finding(
    rule: Rule, ctx: RuleContext, key: ObjectKey, summary: str, **evidence: object
) -> Finding:
    """A finding about one Kubernetes object: it is the subject, and where it lives the
    evidence."""
    return new_finding(
        rule,
        str(key),
        summary,
        key.cluster,
        ctx,
        cluster=key.cluster,
        namespace=key.namespace,
        name=key.name,
        **evidence,
    )


def side_evidence(ctx: RuleContext, view: VolumeView) -> dict[str, object]:
    """Both sides at a glance: what the DR1-vs-DR2 table of an alert shows."""
    out: dict[str, object] = {}
    for s in view.sides:
        img = s.image or {}
        out[f"{s.cluster}.image"] = (
            f"{img.get('state', 'not listed')} primary={img.get('primary', '?')}"
        )
        out[f"{s.cluster}.probe"] = s.pool_probe or "not probed"
        if s.pvc:
            out[f"{s.cluster}.pvc"] = f"{s.pvc.namespace}/{s.pvc.name}"
        if s.vr:
            vr = ctx.inventory.objects.get(s.vr)
            want = vr.facts.get("replicationState") if vr else None
            state = vr.facts.get("state") if vr else None
            out[f"{s.cluster}.vr"] = f"{s.vr.namespace}/{s.vr.name} {want or '?'}/{state or '?'}"
    if view.synced_at is not None and ctx.now is not None:
        out["last_sync_age"] = durations.human(ctx.now - view.synced_at)
    if view.drpc_phases:
        out["drpc"] = ", ".join(view.drpc_phases)
    return out


# ------------------------------------------------------------ rule decorators


def volume_rule(
    words: RuleWords,
) -> Callable[[Callable[[Rule, RuleContext, VolumeView], Verdict]], Rule]:
    """A rule judged per volume: its name, severity, for-duration and words beside its
    function (as Prometheus' AlertingRule keeps them beside its Eval). The function is given
    its own rule, to word its findings: no rule looks itself up by name."""

    def wrap(judge: Callable[[Rule, RuleContext, VolumeView], Verdict]) -> Rule:
        def evaluate(ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
            return {str(v.id): judge(rule, ctx, v) for v in ctx.volumes}

        rule = words.rule(evaluate)
        return rule

    return wrap


def keys_rule(
    words: RuleWords,
) -> Callable[[Callable[[Rule, RuleContext, Iterable[ObjectKey]], dict[str, Verdict]]], Rule]:
    """A rule judged on the keys a change touched (a pool, a stream, a site's clock)."""

    def wrap(judge: Callable[[Rule, RuleContext, Iterable[ObjectKey]], dict[str, Verdict]]) -> Rule:
        def evaluate(ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
            return judge(rule, ctx, keys)

        rule = words.rule(evaluate)
        return rule

    return wrap


Facts = dict[str, str | None]
JudgeObject = Callable[[Rule, RuleContext, ObjectKey, Facts, tuple[VolumeView, ...]], Verdict]


def object_rule(kind: Kind, words: RuleWords) -> Callable[[JudgeObject], Rule]:
    """A rule judged per object of ``kind`` that joins volumes (a Ramen VRG, a consistency
    group): those a change touched, and those joined to the volumes it touched. The function
    gets the object's key, its facts and the views of every volume it joins. An object gone is
    fine, and so is one with a volume in a DR window: what it says moves with the action."""

    def wrap(judge: JudgeObject) -> Rule:
        @keys_rule(words)
        def evaluate(rule: Rule, ctx: RuleContext, keys: Iterable[ObjectKey]) -> dict[str, Verdict]:
            found = {k for k in keys if k.kind == kind.kind}
            found |= {k for v in ctx.volumes for k in ctx.joining(v.id) if k.kind == kind.kind}
            out: dict[str, Verdict] = {}
            for key in sorted(found):
                known = ctx.inventory.objects.get(key)
                members = ctx.members(key) if known is not None else ()
                if known is None or any(v.id in ctx.switching for v in members):
                    out[str(key)] = None
                else:
                    out[str(key)] = judge(rule, ctx, key, known.facts, members)
            return out

        return evaluate

    return wrap
