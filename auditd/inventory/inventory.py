"""The last known state of every watched object, and the transitions that change it.

Pure and in-memory: events in, ``Delta`` out. The store persists deltas; the rules read the
inventory. Deduplication lives here: an event whose resourceVersion is not newer than what we
hold (a resumed watch replaying, a list racing a watch) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from auditd.inventory.facts import Facts, facts_of
from auditd.sources.kube.events import (
    KubeEvent,
    ObjectEvent,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.sources.kube.health import AUDIT_STREAM, stream_state

Obj = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjectKey:
    cluster: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.cluster}/{self.kind}/{ns}{self.name}"


@dataclass
class Known:
    uid: str | None
    resource_version: str | None
    facts: Facts


@dataclass(frozen=True)
class Transition:
    key: ObjectKey
    field: str
    old: str | None
    new: str | None
    observed_at: datetime
    source: str
    late: bool
    resource_version: str | None


@dataclass
class Delta:
    """What one or more events changed: rows to append, rows to upsert or delete, keys touched."""

    transitions: list[Transition] = field(default_factory=list)
    upserts: dict[ObjectKey, Known] = field(default_factory=dict)
    deletes: set[ObjectKey] = field(default_factory=set)

    @property
    def touched(self) -> set[ObjectKey]:
        return set(self.upserts) | self.deletes

    def merge(self, other: Delta) -> None:
        self.transitions.extend(other.transitions)
        for k, v in other.upserts.items():
            self.upserts[k] = v
            self.deletes.discard(k)
        for k in other.deletes:
            self.deletes.add(k)
            self.upserts.pop(k, None)

    def __bool__(self) -> bool:
        return bool(self.transitions or self.upserts or self.deletes)


EXISTS = "exists"


def key_of(cluster: str, kind: str, obj: Obj) -> ObjectKey:
    meta = obj["metadata"]
    return ObjectKey(cluster, kind, meta.get("namespace") or "", meta["name"])


def _rv_newer(new: str | None, old: str | None) -> bool:
    """resourceVersions are opaque, but every real server uses etcd revisions (integers)."""
    if new is None or old is None:
        return True
    try:
        return int(new) > int(old)
    except ValueError:
        return new != old


@dataclass
class _Listing:
    """A list in progress for one cluster and kind: how to label what it finds, what it saw."""

    source: str
    late: bool
    seen: set[ObjectKey] = field(default_factory=set)


class Inventory:
    def __init__(self) -> None:
        self.objects: dict[ObjectKey, Known] = {}
        self._by_kind: dict[tuple[str, str], set[ObjectKey]] = {}
        # (cluster, kind) pairs whose state came from a previous run: their first list is a resync.
        self._loaded: set[tuple[str, str]] = set()
        self._listing: dict[tuple[str, str], _Listing] = {}

    def load(self, rows: Iterable[tuple[ObjectKey, Known]]) -> None:
        for key, known in rows:
            self._put(key, known)
            self._loaded.add((key.cluster, key.kind))

    def keys_of(self, cluster: str, kind: str) -> set[ObjectKey]:
        return set(self._by_kind.get((cluster, kind), ()))

    def apply(self, item: KubeEvent) -> Delta:
        if isinstance(item, ObjectEvent):
            return self.apply_event(item)
        if isinstance(item, SnapshotStart):
            self._start(item.cluster, item.kind, item.source)
            return Delta()
        if isinstance(item, SnapshotPage):
            return self._page(item)
        return self._end(item)

    # ------------------------------------------------------------------ events
    def apply_event(self, ev: ObjectEvent) -> Delta:
        key = key_of(ev.cluster, ev.kind, ev.obj)
        meta = ev.obj["metadata"]
        rv = str(meta.get("resourceVersion")) if meta.get("resourceVersion") else None
        old = self.objects.get(key)
        if old is not None and not _rv_newer(rv, old.resource_version):
            return Delta()  # a replay of something we already hold
        if ev.type == "DELETED":
            if old is None:
                return Delta()
            return self._delete(key, old, ev.received_at, "watch", False, rv)
        new = Known(meta.get("uid"), rv, facts_of(ev.kind, ev.obj))
        return self._upsert(key, old, new, ev.received_at, "watch", False)

    # ------------------------------------------------------------ stream health
    def apply_health(
        self, streams: Iterable[dict[str, Any]], now: datetime, blind_after: timedelta
    ) -> Delta:
        """Each watch stream's coarse state (ok, blind, absent) as facts of an AuditStream."""
        delta = Delta()
        for h in streams:
            key = ObjectKey(h["cluster"], AUDIT_STREAM, "", h["kind"])
            new = Known(None, None, {"state": stream_state(h, now, blind_after)})
            old = self.objects.get(key)
            if old is None:
                # A stream's first state is its baseline, not news: only changes are history.
                self._put(key, new)
                delta.upserts[key] = new
            elif old.facts != new.facts:
                delta.merge(self._upsert(key, old, new, now, "health", False))
        return delta

    # ------------------------------------------------------------ list snapshot
    def _start(self, cluster: str, kind: str, list_source: str) -> _Listing:
        resync = list_source == "list" and (cluster, kind) in self._loaded
        source = "resync" if resync else list_source
        # A relist or resync finds changes after the fact; a first-ever list is the baseline.
        listing = _Listing(source, late=source != "list")
        self._listing[(cluster, kind)] = listing
        return listing

    def _page(self, page: SnapshotPage) -> Delta:
        listing = self._listing.get((page.cluster, page.kind)) or self._start(
            page.cluster, page.kind, page.source
        )
        delta = Delta()
        for obj in page.objects:
            meta = obj.get("metadata")
            if not isinstance(meta, dict) or not meta.get("name"):
                continue
            key = key_of(page.cluster, page.kind, obj)
            listing.seen.add(key)
            rv = str(meta["resourceVersion"]) if meta.get("resourceVersion") else None
            new = Known(meta.get("uid"), rv, facts_of(page.kind, obj))
            delta.merge(
                self._upsert(
                    key, self.objects.get(key), new, page.received_at, listing.source, listing.late
                )
            )
        return delta

    def _end(self, end: SnapshotEnd) -> Delta:
        """The list is complete: whatever it did not contain is gone."""
        listing = self._listing.pop((end.cluster, end.kind), None) or _Listing(end.source, True)
        self._loaded.discard((end.cluster, end.kind))
        delta = Delta()
        for key in sorted(self.keys_of(end.cluster, end.kind) - listing.seen):
            delta.merge(
                self._delete(
                    key,
                    self.objects[key],
                    end.received_at,
                    listing.source,
                    listing.late,
                    end.resource_version,
                )
            )
        return delta

    # -------------------------------------------------------------- primitives
    def _upsert(
        self,
        key: ObjectKey,
        old: Known | None,
        new: Known,
        at: datetime,
        source: str,
        late: bool,
    ) -> Delta:
        delta = Delta()
        rv = new.resource_version
        if old is None:
            delta.transitions.append(Transition(key, EXISTS, "false", "true", at, source, late, rv))
            for f, v in sorted(new.facts.items()):
                if v is not None:
                    delta.transitions.append(Transition(key, f, None, v, at, source, late, rv))
        else:
            if old.uid and new.uid and old.uid != new.uid:
                # Deleted and created again while we were not looking.
                delta.transitions.append(
                    Transition(key, "uid", old.uid, new.uid, at, source, late, rv)
                )
            for f in sorted(set(old.facts) | set(new.facts)):
                a, b = old.facts.get(f), new.facts.get(f)
                if a != b:
                    delta.transitions.append(Transition(key, f, a, b, at, source, late, rv))
            if not delta.transitions:
                # Churn only (status heartbeat, managedFields): remember the version, write nothing.
                self.objects[key] = new
                return delta
        self._put(key, new)
        delta.upserts[key] = new
        return delta

    def _put(self, key: ObjectKey, known: Known) -> None:
        self.objects[key] = known
        self._by_kind.setdefault((key.cluster, key.kind), set()).add(key)

    def _delete(
        self, key: ObjectKey, old: Known, at: datetime, source: str, late: bool, rv: str | None
    ) -> Delta:
        del self.objects[key]
        self._by_kind[(key.cluster, key.kind)].discard(key)
        delta = Delta()
        delta.transitions.append(Transition(key, EXISTS, "true", "false", at, source, late, rv))
        delta.deletes.add(key)
        return delta
