"""Every rule auditd has, in the order they are evaluated and listed: the volume and object
rules (builtin.py), those judging a consistency group as a whole (groups.py), and Ramen's
application-level word (ramen.py)."""

from __future__ import annotations

from auditd.rules import builtin, groups, ramen
from auditd.rules.model import Rule

BUILTIN_RULES: tuple[Rule, ...] = (*builtin.RULES, *groups.RULES, *ramen.RULES)
# The rules a refreshed lag alone can change: a probe cycle re-evaluates only these.
LAG_RULES = builtin.LAG_RULES | {"ramen-rpo-disagreement"}
