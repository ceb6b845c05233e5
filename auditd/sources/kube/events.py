"""What the watch source hands to the inventory: plain data, no client objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Obj = dict[str, Any]


@dataclass(frozen=True)
class ObjectEvent:
    """One ADDED/MODIFIED/DELETED event from a watch stream."""

    cluster: str
    kind: str
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    obj: Obj
    received_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """A complete list of one kind on one cluster; what is missing from it no longer exists.

    ``source`` is ``list`` for the first list of a process and ``relist`` after the watch lost
    its place (410 Expired, too-large resourceVersion).
    """

    cluster: str
    kind: str
    objects: list[Obj]
    resource_version: str
    source: Literal["list", "relist"]
    received_at: datetime


KubeEvent = ObjectEvent | Snapshot
