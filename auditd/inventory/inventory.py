"""The last known state of every watched object, and the transitions that change it.

Pure and in-memory: events in, ``Delta`` out. The store persists deltas; the rules read the
inventory. Deduplication lives here: an event whose resourceVersion is not newer than what we
hold (a resumed watch replaying, a list racing a watch) changes nothing.

Every watch event passes through here, so keys and transitions are NamedTuples (cheap to make,
hash and sort) and a batch's events append into one ``Delta`` instead of merging many.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from auditd.inventory.facts import Facts
from auditd.inventory.rbd_facts import (
    RBD_IMAGE,
    RBD_POOL,
    image_facts,
    pool_info_facts,
    pool_status_facts,
)
from auditd.inventory.records import ImageRecord, RecordBook, RecordKey
from auditd.sources.kube.events import (
    KubeEvent,
    ObjectEvent,
    Observed,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.sources.kube.health import AUDIT_STREAM, AUDITD_ITSELF, stream_state
from auditd.sources.kube.observe import MAX_NAME
from auditd.sources.rbd.probe import ProbeResult
from auditd.sources.text import clip


class ObjectKey(NamedTuple):
    cluster: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.cluster}/{self.kind}/{ns}{self.name}"


@dataclass(slots=True)
class Known:
    uid: str | None
    resource_version: str | None
    facts: Facts


class Transition(NamedTuple):
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
    # Image records (inventory/records.py) a probe rewrote, and those of images gone.
    records: dict[RecordKey, ImageRecord] = field(default_factory=dict)
    records_gone: list[RecordKey] = field(default_factory=list)

    @property
    def touched(self) -> set[ObjectKey]:
        return set(self.upserts) | self.deletes

    def changed(self) -> dict[ObjectKey, set[str]]:
        """The facts each key changed (its transitions' fields): what the rules are asked about
        (rules/narrow.py)."""
        out: dict[ObjectKey, set[str]] = {}
        for t in self.transitions:
            out.setdefault(t.key, set()).add(t.field)
        return out

    def upsert(self, key: ObjectKey, known: Known) -> None:
        self.upserts[key] = known
        if self.deletes:
            self.deletes.discard(key)

    def delete(self, key: ObjectKey) -> None:
        self.deletes.add(key)
        self.upserts.pop(key, None)

    def __bool__(self) -> bool:
        return bool(
            self.transitions or self.upserts or self.deletes or self.records or self.records_gone
        )


EXISTS = "exists"
# The pseudo-kind under which an object auditd could not take in is recorded (one per object).
QUARANTINED = "Quarantined"


def quarantine_key(key: ObjectKey) -> ObjectKey:
    name = clip(f"{key.kind}/{key.namespace}/{key.name}" if key.namespace else
                f"{key.kind}/{key.name}", MAX_NAME)  # fmt: skip
    return ObjectKey(key.cluster, QUARANTINED, "", name)


def origin_kind(qkey: ObjectKey) -> str:
    """The kind of the object a Quarantined key stands for."""
    return qkey.name.split("/", 1)[0]


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


@dataclass
class Checkpoint:
    listing: dict[tuple[str, str], _Listing]
    loaded: set[tuple[str, str]]
    complete: set[tuple[str, str]]


class Inventory:
    def __init__(self) -> None:
        self.objects: dict[ObjectKey, Known] = {}
        self._by_kind: dict[tuple[str, str], set[ObjectKey]] = {}
        # (cluster, kind) pairs whose state came from a previous run: their first list is a resync.
        self._loaded: set[tuple[str, str]] = set()
        self._listing: dict[tuple[str, str], _Listing] = {}
        self._complete: set[tuple[str, str]] = set()
        self.records = RecordBook()
        # Objects whose facts could not be taken in -> their Quarantined pseudo-object.
        self.quarantined: dict[ObjectKey, ObjectKey] = {}

    def load(
        self, rows: Iterable[tuple[ObjectKey, Known]], listed: Iterable[tuple[str, str]] = ()
    ) -> None:
        """A previous run's objects, and the (cluster, kind) streams it had listed: a kind it
        found empty is known too, so what this run's first list finds there is new."""
        self._loaded.update(listed)
        for key, known in rows:
            self._put(key, known)
            self._loaded.add((key.cluster, key.kind))
            if key.kind == RBD_POOL and known.facts.get("probe") in ("ok", "stale"):
                # Measured by the last run (no fact: the clocks agreed).
                with contextlib.suppress(ValueError, TypeError):
                    offset = timedelta(seconds=float(known.facts.get("clock_offset") or 0))
                    self.records.clocks.seed(key.cluster, offset)
            if key.kind == QUARANTINED:
                f = known.facts
                origin = ObjectKey(key.cluster, f.get("kind") or "", f.get("namespace") or "",
                                   f.get("name") or "")  # fmt: skip
                self.quarantined[origin] = key

    def checkpoint(self) -> Checkpoint:
        """The lists in progress (not stored anywhere but here), to carry over when memory is
        reloaded from the database after a batch failed (daemon/ingest.py)."""
        listing = {k: _Listing(v.source, v.late, set(v.seen)) for k, v in self._listing.items()}
        return Checkpoint(listing, set(self._loaded), set(self._complete))

    def resume(self, checkpoint: Checkpoint) -> None:
        self._listing = checkpoint.listing
        self._loaded = checkpoint.loaded
        self._complete = checkpoint.complete

    def transplant(self, other: Inventory, clusters: set[str]) -> None:
        """Take these clusters' state (objects, quarantines, image records, clock readings)
        from ``other``: what a replica watched of the pairs another replica writes, kept when
        the rest of memory is reloaded from the database."""
        for key in [k for k in self.objects if k.cluster in clusters]:
            del self.objects[key]
        for group in [g for g in self._by_kind if g[0] in clusters]:
            del self._by_kind[group]
        for key, known in other.objects.items():
            if key.cluster in clusters:
                self._put(key, known)
        self.quarantined = {
            origin: q for origin, q in self.quarantined.items() if origin.cluster not in clusters
        } | {origin: q for origin, q in other.quarantined.items() if origin.cluster in clusters}
        self.records.transplant(other.records, clusters)

    def complete_kinds(self) -> set[tuple[str, str]]:
        """The (cluster, kind) streams whose state here comes from a complete list made by
        this process and kept current since (not one loaded from a previous run's history)."""
        return set(self._complete)

    def keys_of(self, cluster: str, kind: str) -> set[ObjectKey]:
        return set(self._by_kind.get((cluster, kind), ()))

    def holds(self, cluster: str, kind: str) -> bool:
        """Any object of this kind on this cluster (``keys_of`` copies 10,000 keys to say so)."""
        return bool(self._by_kind.get((cluster, kind)))

    def apply(self, item: KubeEvent, into: Delta | None = None) -> Delta:
        """Apply one source event; its changes are appended to ``into`` (or a new Delta)."""
        delta = Delta() if into is None else into
        if isinstance(item, ObjectEvent):
            self._event(item, delta)
        elif isinstance(item, SnapshotStart):
            self._start(item.cluster, item.kind, item.source)
        elif isinstance(item, SnapshotPage):
            self._page(item, delta)
        else:
            self._end(item, delta)
        return delta

    # ------------------------------------------------------------------ events
    def _event(self, ev: ObjectEvent, delta: Delta) -> None:
        o = ev.object
        key = ObjectKey(ev.cluster, ev.kind, o.namespace, o.name)
        old = self.objects.get(key)
        if old is not None and not _rv_newer(o.resource_version, old.resource_version):
            return  # a replay of something we already hold
        if ev.type == "DELETED":
            if old is not None:
                self._delete(key, ev.received_at, "watch", False, o.resource_version, delta)
            self._release(key, ev.received_at, "watch", False, delta)
            return
        if o.problem is not None:
            self._quarantine(key, o, ev.received_at, "watch", False, delta)
            return
        new = Known(o.uid, o.resource_version, o.facts)
        self._upsert(key, old, new, ev.received_at, "watch", False, delta)
        self._release(key, ev.received_at, "watch", False, delta)

    # ------------------------------------------------------------- quarantine
    def _quarantine(
        self, key: ObjectKey, o: Observed, at: datetime, source: str, late: bool, delta: Delta
    ) -> None:
        """An object whose facts could not be taken in: keep its last good state (if any) and
        record the quarantine as facts of a pseudo-object, so it has history, a place in
        `auditd status` and the report, and a metric, like a blind stream."""
        qkey = quarantine_key(key)
        facts = {
            "kind": key.kind,
            "namespace": key.namespace or None,
            "name": key.name,
            "reason": o.problem,
            "resource_version": o.resource_version,
        }
        self.quarantined[key] = qkey
        self._upsert(qkey, self.objects.get(qkey), Known(None, None, facts), at, source, late,
                     delta)  # fmt: skip

    def _release(self, key: ObjectKey, at: datetime, source: str, late: bool, delta: Delta) -> None:
        """The object is well-formed again, or gone: its quarantine ends."""
        if self.quarantined and key in self.quarantined:
            qkey = self.quarantined.pop(key)
            if qkey in self.objects:
                self._delete(qkey, at, source, late, None, delta)

    # ------------------------------------------------------------ stream health
    def apply_health(
        self,
        streams: Iterable[dict[str, Any]],
        now: datetime,
        blind_after: timedelta,
        stale_after: timedelta,
        into: Delta | None = None,
    ) -> Delta:
        """Each watch stream's coarse state (listing, ok, reconnecting, blind, absent) as facts
        of an AuditStream."""
        delta = Delta() if into is None else into
        for h in streams:
            key = ObjectKey(h["cluster"], AUDIT_STREAM, "", h["kind"])
            new = Known(None, None, {"state": stream_state(h, now, blind_after, stale_after)})
            old = self.objects.get(key)
            if old is None:
                # A stream's first state is its baseline, not news: only changes are history.
                self._put(key, new)
                delta.upsert(key, new)
            elif old.facts != new.facts:
                self._upsert(key, old, new, now, "health", False, delta)
        return delta

    def apply_downtime(
        self,
        clusters: Iterable[str],
        down_at: datetime,
        up_at: datetime,
        blind_after: timedelta,
        into: Delta | None = None,
    ) -> Delta:
        """auditd itself was not running from ``down_at`` (its last heartbeat) to ``up_at``.

        What the last run stored of storage is last-known, not current: every pool it had
        probed is ``stale`` and its images ``unknown`` until this run's first probe answers
        (its lag, measured against now, would count the downtime). A downtime longer than
        ``blind_after`` is also a blind spot on every cluster, found at start-up, so late."""
        delta = Delta() if into is None else into
        up = Known(None, None, {"state": "ok"})
        for cluster in clusters:
            for pool in sorted(self.keys_of(cluster, RBD_POOL)):
                old = self.objects[pool]
                if old.facts.get("probe") == "ok":
                    known = Known(None, None, {**old.facts, "probe": "stale"})
                    self._upsert(pool, old, known, up_at, "health", True, delta)
                    self._images_unknown(cluster, pool.name, up_at, "health", True, delta)
            if up_at - down_at <= blind_after:
                continue
            key = ObjectKey(cluster, AUDIT_STREAM, "", AUDITD_ITSELF)
            if key not in self.objects:
                self._put(key, up)
                delta.upsert(key, up)
            out = delta.transitions
            out.append(Transition(key, "state", "ok", "down", down_at, "health", True, None))
            out.append(Transition(key, "state", "down", "ok", up_at, "health", True, None))
        return delta

    def _images_unknown(
        self, cluster: str, pool: str, at: datetime, source: str, late: bool, delta: Delta
    ) -> None:
        """The pool's images keep their last good state and role, but nothing about them is
        known to be healthy (metrics, the report's healthy share and explain read ``class``)."""
        for key in sorted(self.keys_of(cluster, RBD_IMAGE)):
            old = self.objects[key]
            if key.namespace == pool and old.facts.get("class") != "unknown":
                blind = Known(old.uid, None, {**old.facts, "class": "unknown"})
                self._upsert(key, old, blind, at, source, late, delta)

    # --------------------------------------------------------------- rbd probes
    def apply_probe(
        self, result: ProbeResult, stale_after: timedelta, into: Delta | None = None
    ) -> Delta:
        """A pool probe: the pool's facts, and each image's; images gone from the pool are gone.

        A failed probe changes the pool's ``probe`` fact, and each image's ``class`` to
        ``unknown`` (metrics, the report's healthy share and explain read it): the images keep
        their last good state and role, but nothing about them is known to be healthy until a
        good probe.
        """
        delta = Delta() if into is None else into
        at = result.at
        pool_key = ObjectKey(result.cluster, RBD_POOL, "", result.pool)
        old_pool = self.objects.get(pool_key)
        facts = dict(old_pool.facts) if old_pool else {}
        if result.failure is not None:
            field_ = "probe" if result.kind == "status" else "info_probe"
            facts.update({field_: "failing", f"{field_}_error": result.failure.kind})
            if result.kind == "status" and not facts.get("probe_failing_since"):
                # When this spell of failures began: the blind-spot rule's clock.
                facts["probe_failing_since"] = at.isoformat()
        elif result.status is not None:
            facts.update(pool_status_facts(result.status))
            changed, records_gone = self.records.observe(
                result.cluster, result.pool, result.status.images, at
            )
            delta.records.update(changed)
            delta.records_gone.extend(records_gone)
            # This site's clock minus auditd's (seconds), when they disagree: its own finding.
            facts["clock_offset"] = self.records.clocks.fact(result.cluster)
        elif result.info is not None:
            facts.update(info_probe_error=None, **pool_info_facts(result.info, result.schedules))
        self._upsert(pool_key, old_pool, Known(None, None, facts), at, "probe", False, delta)
        if result.failure is not None and result.kind == "status":
            self._images_unknown(result.cluster, result.pool, at, "probe", False, delta)
        if result.status is None:
            return delta
        seen: set[ObjectKey] = set()
        # Staleness is judged on the site's own clock (a record's age there).
        clocks = self.records.clocks
        site_now = at + clocks.offset(result.cluster)
        measured = clocks.measured(result.cluster, result.pool)
        for image in result.status.images:
            key = ObjectKey(result.cluster, RBD_IMAGE, result.pool, image.name)
            seen.add(key)
            state = image_facts(image, site_now, stale_after)
            if state["class"] == "stale" and not measured:
                # Old records at first sight: a dead rbd-mirror, or a clock behind. The next
                # probe tells which; until then the image is unknown (never healthy).
                state["class"] = "unknown"
            new = Known(image.global_id or None, None, state)
            self._upsert(key, self.objects.get(key), new, at, "probe", False, delta)
        gone = {k for k in self.keys_of(result.cluster, RBD_IMAGE) if k.namespace == result.pool}
        for key in sorted(gone - seen):
            self._delete(key, at, "probe", False, None, delta)
        return delta

    # ------------------------------------------------------------ list snapshot
    def _start(self, cluster: str, kind: str, list_source: str) -> _Listing:
        resync = list_source == "list" and (cluster, kind) in self._loaded
        source = "resync" if resync else list_source
        # A relist or resync finds changes after the fact; a first-ever list is the baseline.
        listing = _Listing(source, late=source != "list")
        self._listing[(cluster, kind)] = listing
        self._complete.discard((cluster, kind))
        return listing

    def _page(self, page: SnapshotPage, delta: Delta) -> None:
        listing = self._listing.get((page.cluster, page.kind)) or self._start(
            page.cluster, page.kind, page.source
        )
        at, source, late = page.received_at, listing.source, listing.late
        for o in page.objects:
            key = ObjectKey(page.cluster, page.kind, o.namespace, o.name)
            listing.seen.add(key)  # a quarantined object still exists: never "gone" at the end
            if o.problem is not None:
                self._quarantine(key, o, at, source, late, delta)
                continue
            new = Known(o.uid, o.resource_version, o.facts)
            self._upsert(key, self.objects.get(key), new, at, source, late, delta)
            self._release(key, at, source, late, delta)

    def _end(self, end: SnapshotEnd, delta: Delta) -> None:
        """The list is complete: whatever it did not contain is gone."""
        listing = self._listing.pop((end.cluster, end.kind), None) or _Listing(end.source, True)
        self._loaded.discard((end.cluster, end.kind))
        self._complete.add((end.cluster, end.kind))
        for key in sorted(self.keys_of(end.cluster, end.kind) - listing.seen):
            self._delete(
                key, end.received_at, listing.source, listing.late, end.resource_version, delta
            )
        held = [k for k in self.quarantined if k.cluster == end.cluster and k.kind == end.kind]
        for key in sorted(set(held) - listing.seen):
            self._release(key, end.received_at, listing.source, listing.late, delta)

    # -------------------------------------------------------------- primitives
    def _upsert(
        self,
        key: ObjectKey,
        old: Known | None,
        new: Known,
        at: datetime,
        source: str,
        late: bool,
        delta: Delta,
    ) -> None:
        rv = new.resource_version
        out = delta.transitions
        if old is None:
            out.append(Transition(key, EXISTS, "false", "true", at, source, late, rv))
            for f, v in sorted(new.facts.items()):
                if v is not None:
                    out.append(Transition(key, f, None, v, at, source, late, rv))
        else:
            before = len(out)
            if old.uid and new.uid and old.uid != new.uid:
                # Deleted and created again while we were not looking.
                out.append(Transition(key, "uid", old.uid, new.uid, at, source, late, rv))
            a_facts, b_facts = old.facts, new.facts
            if a_facts.keys() == b_facts.keys():  # the common case: one pass, no set, no sort
                diffs = [(f, a, b) for f, b in b_facts.items() if (a := a_facts[f]) != b]
                diffs.sort()  # in the order of their names, as below (names are unique)
            else:
                fields = sorted(a_facts.keys() | b_facts.keys())
                diffs = [
                    (f, a, b) for f in fields if (a := a_facts.get(f)) != (b := b_facts.get(f))
                ]
            for f, a, b in diffs:
                out.append(Transition(key, f, a, b, at, source, late, rv))
            if len(out) == before:
                # Churn only (status heartbeat, managedFields): remember the version, write nothing.
                self.objects[key] = new
                return
        self._put(key, new)
        delta.upsert(key, new)

    def _put(self, key: ObjectKey, known: Known) -> None:
        if key not in self.objects:  # a key held is in its kind's set already
            self._by_kind.setdefault((key.cluster, key.kind), set()).add(key)
        self.objects[key] = known

    def _delete(
        self,
        key: ObjectKey,
        at: datetime,
        source: str,
        late: bool,
        rv: str | None,
        delta: Delta,
    ) -> None:
        del self.objects[key]
        self._by_kind[(key.cluster, key.kind)].discard(key)
        delta.transitions.append(Transition(key, EXISTS, "true", "false", at, source, late, rv))
        delta.delete(key)
