"""Which rules a batch's changes can change, per volume.

Most of a watch burst is facts changing on objects that stay where they are: a PVC's phase, a
VolumeReplication's state or lastSyncTime. Such a change leaves its volume's view as it was
(the view holds which objects exist and what links them, and Ceph's side of the volume), so
the only rules that can judge the volume differently are those that read that fact themselves
(``Rule.reads``). Asking every rule about every such change made the rules most of the
writer's time per event (bench/watch_scale.py).

A change is narrow when it changes PVC, PV or VolumeReplication facts that link nothing: not
the object's existence, not what joins it to its volume (``LINKS``, as views.Correlator reads
them). Everything else (an object appearing or going, a relink, Ceph, a watch stream, any other
kind) judges its volumes with every rule, and so does a volume whose DR window moved in the
same evaluation (the engine decides that: the window tracker reads some of these facts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from auditd.inventory.inventory import EXISTS, ObjectKey
from auditd.rules.model import Reads
from auditd.rules.views import PV, PVC, VR

Field = tuple[str, str]  # (kind, fact)

# The facts that link an object to its volume: PV -> image (pool, imageName), PV -> PVC
# (claimRef), PVC -> PV (volumeName), VR -> PVC (dataSource).
LINKS: Mapping[str, frozenset[str]] = {
    PVC: frozenset({"volumeName"}),
    PV: frozenset({"claimRef", "pool", "imageName"}),
    VR: frozenset({"dataSource"}),
}


def narrow_changes(
    changed: Mapping[ObjectKey, Iterable[str]],
) -> dict[ObjectKey, frozenset[Field]]:
    """The keys whose every changed fact is narrow, with those facts as (kind, field)."""
    out: dict[ObjectKey, frozenset[Field]] = {}
    for key, fields in changed.items():
        links = LINKS.get(key.kind)
        if links is None:
            continue
        facts = frozenset(fields)
        if not facts or EXISTS in facts or facts & links:
            continue
        out[key] = frozenset((key.kind, f) for f in facts)
    return out


def reads_any(reads: Reads | None, changed: Iterable[Field]) -> bool:
    """Does a rule reading ``reads`` (None: anything) read any of these facts?"""
    if reads is None:
        return True
    for kind, fact in changed:
        for read_kind, read in reads:
            if read_kind == kind and (
                read == fact or (read.endswith("*") and fact.startswith(read[:-1]))
            ):
                return True
    return False
