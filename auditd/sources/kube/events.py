"""What the watch source hands to the inventory: plain data, no client objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Obj = dict[str, Any]
Facts = dict[str, str | None]
ListSource = Literal["list", "relist"]


@dataclass(frozen=True, slots=True)
class Observed:
    """One object as seen, reduced to its identity and DR facts as soon as it is decoded.

    The raw object (hundreds of containers) is dropped at once: queues and batches then hold a
    few strings per object, which keeps memory flat and the cyclic GC cheap.
    """

    namespace: str  # "" for cluster-scoped kinds
    name: str
    uid: str | None
    resource_version: str | None
    facts: Facts
    # Set when the object's facts could not be taken in (sources/kube/observe.py): it exists
    # under this identity, but nothing it says is known. The inventory quarantines it.
    problem: str | None = None


@dataclass(frozen=True)
class ObjectEvent:
    """One ADDED/MODIFIED/DELETED event from a watch stream."""

    cluster: str
    kind: str
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: Observed
    received_at: datetime


@dataclass(frozen=True)
class SnapshotStart:
    """A complete list of one kind on one cluster begins (again, if a list had to restart).

    ``source`` is ``list`` for the first list of a process and ``relist`` after the watch lost
    its place (410 Expired, too-large resourceVersion, a CRD that came back).
    """

    cluster: str
    kind: str
    source: ListSource
    received_at: datetime


@dataclass(frozen=True)
class SnapshotPage:
    """One page of that list. Pages are handed over as they arrive so a 10k-object relist
    never holds every raw object in memory at once."""

    cluster: str
    kind: str
    objects: list[Observed]
    source: ListSource
    received_at: datetime


@dataclass(frozen=True)
class SnapshotEnd:
    """The list is complete at ``resource_version``: what it did not contain no longer exists."""

    cluster: str
    kind: str
    resource_version: str
    source: ListSource
    received_at: datetime


KubeEvent = ObjectEvent | SnapshotStart | SnapshotPage | SnapshotEnd
