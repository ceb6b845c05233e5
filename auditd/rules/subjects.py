"""A violation's subject read back as what its rule judged: an object or a volume.

Rules name their subjects ``cluster/Kind/namespace/name`` (an object), ``pair/pool/image`` (a
volume), or something of their own (``cluster/dr1``, ``dr1/ceph-clock``). A pending violation is
judged again before it fires (daemon/ingest.py): its condition may have stopped holding with no
event reaching its subject (memory reloaded after a lost commit, or a restart), and a violation
is never announced on a verdict older than the state it describes.
"""

from __future__ import annotations

from collections.abc import Collection

from auditd.inventory.inventory import ObjectKey
from auditd.inventory.rbd_facts import RBD_IMAGE, RBD_POOL
from auditd.rules.views import VolumeId
from auditd.sources.kube.kinds import BY_NAME

KINDS = frozenset(BY_NAME) | {RBD_POOL, RBD_IMAGE}


def judged(
    subject: str, pairs: Collection[str], clusters: Collection[str]
) -> ObjectKey | VolumeId | None:
    """The object or volume a subject names; None for a subject of another shape."""
    parts = subject.split("/")
    if len(parts) in (3, 4) and parts[0] in clusters and parts[1] in KINDS:
        cluster, kind, *rest = parts
        namespace, name = (rest[0], rest[1]) if len(rest) == 2 else ("", rest[0])
        return ObjectKey(cluster, kind, namespace, name)
    if len(parts) == 3 and parts[0] in pairs:
        return VolumeId(*parts)
    return None
