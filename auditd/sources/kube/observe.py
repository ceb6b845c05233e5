"""One raw object in, one ``Observed`` out: identity and DR facts, storable on every database.

This is where hostile input stops. Whatever a watch stream or a list page carries, the result
is either a well-formed ``Observed`` whose every string can be stored as is (no NUL byte, no
lone surrogate, identity within Kubernetes' own limits), or an ``Observed`` with a ``problem``:
the object is known to exist under that identity, but its facts could not be taken in. Such an
object is quarantined downstream (its last good state is kept and the quarantine is recorded),
and it never costs the stream, its page or its neighbours anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditd.sources.kube.events import Facts, Obj, Observed
from auditd.sources.text import clip, storable

# Kubernetes' own limits: a name is a DNS subdomain (253), a namespace a DNS label (63).
# resourceVersion and uid are opaque to clients; the store keeps them as text.
MAX_NAME = 253
MAX_NAMESPACE = 63
# A fact's name is one of ours, or "condition." + a condition type (a qualified name, <= 316).
MAX_FIELD = 330


def _opt(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return storable(value if isinstance(value, str) else str(value))


# Fact names seen clean: our own and the condition types of the objects watched, a few dozen.
# Bounded, since condition types come from outside.
_CLEAN_NAMES: dict[str, str] = {}
_CLEAN_NAMES_MAX = 4096


def _fact_name(name: Any) -> str:
    if type(name) is not str:
        return clip(storable(str(name)), MAX_FIELD)
    clean = _CLEAN_NAMES.get(name)
    if clean is None:
        clean = clip(storable(name), MAX_FIELD)
        if len(_CLEAN_NAMES) < _CLEAN_NAMES_MAX:
            _CLEAN_NAMES[name] = clean
    return clean


def clean_facts(facts: Facts) -> Facts:
    # Every watch event's facts pass here: a name seen before is one lookup.
    return {_fact_name(k): storable(v) if type(v) is str else _opt(v) for k, v in facts.items()}


def observe(kind: str, obj: Any, normalize: Callable[[str, Obj], Facts]) -> Observed | None:
    """Identity and facts of a raw object; None when it has no name at all (nothing to key
    it by: the caller counts it as a bad event)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not meta.get("name"):
        return None
    raw_name = storable(str(meta["name"]))
    raw_ns = storable(str(meta.get("namespace") or ""))
    name, namespace = clip(raw_name, MAX_NAME), clip(raw_ns, MAX_NAMESPACE)
    uid, rv = _opt(meta.get("uid")), _opt(meta.get("resourceVersion"))
    for what, raw, limit in (("name", raw_name, MAX_NAME), ("namespace", raw_ns, MAX_NAMESPACE)):
        if len(raw) > limit:
            problem = f"{what} is {len(raw)} characters, more than Kubernetes allows ({limit})"
            return Observed(namespace, name, uid, rv, {}, problem)
    try:
        facts = clean_facts(normalize(kind, obj))
    except Exception as e:  # one object's shape is its own problem, never the stream's
        return Observed(namespace, name, uid, rv, {}, f"cannot read its facts: {_why(e)}")
    return Observed(namespace, name, uid, rv, facts)


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = storable(text[0])[:160] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
