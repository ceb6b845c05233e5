"""Kubernetes label selectors (metav1.LabelSelector), as the API server and Ramen match them.

A selector is ``matchLabels`` (every pair must be present) and ``matchExpressions`` (In, NotIn,
Exists, DoesNotExist), all ANDed; an empty selector selects everything. Ramen's VRG selects its
PVCs this way (``spec.pvcSelector``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector this module cannot read: judging with it would be a guess."""


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Does ``selector`` select an object with these labels? Raises SelectorError when the
    selector is malformed (an unknown operator, values where none belong, or none where some
    must be)."""
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise SelectorError("matchLabels must be a map and matchExpressions a list")
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(_expression(e, labels) for e in expressions)


def _expression(expr: Any, labels: Mapping[str, str]) -> bool:
    if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
        raise SelectorError(f"a matchExpression needs a key: {expr!r}")
    key: str = expr["key"]
    op, values = expr.get("operator"), expr.get("values") or []
    if not isinstance(values, list):
        raise SelectorError(f"values of {key} must be a list")
    if op in ("In", "NotIn"):
        if not values:
            raise SelectorError(f"{op} on {key} needs values")
        inside = key in labels and any(labels[key] == v for v in values)
        return inside if op == "In" else not inside
    if op in ("Exists", "DoesNotExist"):
        if values:
            raise SelectorError(f"{op} on {key} takes no values")
        present = key in labels
        return present if op == "Exists" else not present
    raise SelectorError(f"unknown operator {op!r} on {key}")
