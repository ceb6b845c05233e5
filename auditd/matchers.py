"""Label matchers: one grammar for silences and inhibition rules, as Alertmanager writes them.

``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``; the value may be double
quoted (``rule="rpo-exceeded"``; ``namespace=""`` matches an alert without a namespace). A
regex is anchored at both ends, as in Alertmanager. ``=`` and ``!=`` also take shell globs
(``subject=dr2/*``), auditd's habit since its first silences; a value without ``*``, ``?`` or
``[`` is compared exactly, as Alertmanager compares it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]
OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")

# A regex that only lists names: "split-brain|rpo-exceeded".
_ALTERNATION = re.compile(r"[\w-]+(\|[\w-]+)*")
# The label is a plain name; the operator is the first one after it, longest form first.
_FORM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"not a matcher operator: {self.op!r} (use one of {', '.join(OPS)})")
        if self.op in ("=~", "!~"):
            try:
                regex = re.compile(self.value)
            except re.error as e:
                raise ValueError(f"{self.label}{self.op}{self.value}: not a regex ({e})") from e
            object.__setattr__(self, "_regex", regex)

    def matches(self, labels: Mapping[str, str | None]) -> bool:
        """A label the alert does not carry reads as "" (Alertmanager's rule too)."""
        have = labels.get(self.label) or ""
        if self._regex is not None:
            hit = self._regex.fullmatch(have) is not None
        else:
            hit = fnmatch.fnmatchcase(have, self.value)
        return hit if self.op in ("=", "=~") else not hit

    def names(self) -> tuple[str, ...]:
        """The values this matcher spells out (``rule=split-brain``, ``rule=~"a|b"``), so a
        config can be told it names a rule that does not exist; () for a glob or a real regex."""
        if self._regex is None:
            return () if any(c in self.value for c in "*?[") else (self.value,)
        return tuple(self.value.split("|")) if _ALTERNATION.fullmatch(self.value) else ()

    def __str__(self) -> str:
        plain = self.value and re.fullmatch(r"[^\s\"]+", self.value)
        return f"{self.label}{self.op}{self.value if plain else _quoted(self.value)}"


def unknown_names(matchers: Iterable[Matcher], label: str, known: Collection[str]) -> list[str]:
    """The values the matchers on ``label`` spell out that are not ``known``: a misspelt rule
    id, which would make a silence or an inhibit rule match nothing, silently."""
    return [n for m in matchers if m.label == label for n in m.names() if n not in known]


def parse(text: str, labels: Collection[str]) -> Matcher:
    """A matcher from its text; ``labels``: the names an alert carries. Raises ValueError
    saying what is wrong and what the forms are."""
    form = _FORM.match(text)
    if form is None:
        raise ValueError(
            f"not a matcher: {text!r} (LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX or LABEL!~REGEX)"
        )
    label, op, value = form.groups()
    if label not in labels:
        raise ValueError(f"not a matcher: {text!r}: no label {label!r} ({', '.join(labels)})")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    elif not value:
        raise ValueError(f'not a matcher: {text!r}: no value (write {label}{op}"" for none)')
    return Matcher(label, op, value)  # type: ignore[arg-type]  # _FORM admits only OPS


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
