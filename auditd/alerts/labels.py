"""The labels every alert carries: what silences match, what grouping groups by, and how the
firing gauge is split. One owner, so Slack, silences and Prometheus never disagree."""

from __future__ import annotations

from auditd.rules.lifecycle import Active

NAMES = ("rule", "subject", "severity", "cluster", "pair", "namespace")
# The gauge leaves out the subject: one series per volume would be unbounded cardinality.
METRIC = ("pair", "rule", "severity", "cluster", "namespace")


def labels(v: Active) -> dict[str, str | None]:
    namespace = v.evidence.get("namespace")
    return {
        "rule": v.rule,
        "subject": v.subject,
        "severity": v.severity,
        "cluster": v.cluster,
        "pair": v.pair,
        "namespace": namespace if isinstance(namespace, str) else None,
    }
