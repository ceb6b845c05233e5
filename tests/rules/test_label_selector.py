"""Label selectors as the API server reads them (metav1.LabelSelector)."""

from __future__ import annotations

import pytest

from auditd.rules.label_selector import SelectorError, matches

LABELS = {"app": "shop", "tier": "db"}


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        ({}, True),  # empty: everything
        ({"matchLabels": {"app": "shop"}}, True),
        ({"matchLabels": {"app": "shop", "tier": "web"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "x"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"app": "shop"},
                "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}],
            },
            False,
        ),
    ],
)
def test_match_labels_and_expressions_are_anded(selector: dict, picked: bool) -> None:
    assert matches(selector, LABELS) is picked


@pytest.mark.parametrize(
    "selector",
    [
        {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["s"]}]},
        {"matchExpressions": [{"key": "app", "operator": "In"}]},
        {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [{"operator": "Exists"}]},
        {"matchLabels": ["app"]},
    ],
)
def test_a_malformed_selector_is_an_error_not_a_guess(selector: dict) -> None:
    with pytest.raises(SelectorError):
        matches(selector, LABELS)
