"""Stream health per cluster and kind: what `auditd status` and the blind-spot rule read."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from auditd.clock import SYSTEM, Clock
from auditd.sources.text import storable


@dataclass
class StreamHealth:
    cluster: str
    kind: str
    connected: bool = False
    synced: bool = False  # the first complete list has been handed over
    absent: bool = False  # the kind's CRD is not installed on this cluster
    last_event_at: datetime | None = None  # events and bookmarks both count
    last_list_at: datetime | None = None
    disconnected_since: datetime | None = None  # set at creation: not yet connected
    lists: int = 0
    relists: int = 0
    errors: int = 0
    bad_events: int = 0
    last_error: str | None = None
    resource_version: str | None = None
    # Since when the watcher has been waiting for auditd's own writer to take what it read
    # (a database that cannot be written): auditd's problem, not the cluster's.
    held_since: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _clock: Clock = field(default=SYSTEM, repr=False, compare=False)
    # Told when the stream's state changes by itself, not by time passing: its first list
    # handed over, its kind found served or not. Verdicts on that cluster wait for the first
    # (a stream is listing until then), not for the next periodic report.
    _on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.disconnected_since is None and not self.connected:
            self.disconnected_since = self._clock.now()

    def mark_connected(self) -> None:
        with self._lock:
            self.connected = True
            self.disconnected_since = None

    def mark_event(self, resource_version: str | None, at: datetime | None = None) -> None:
        """``at``: when the event was read, if the caller already asked the clock."""
        with self._lock:
            self.last_event_at = at or self._clock.now()
            if resource_version:
                self.resource_version = storable(resource_version)

    def mark_listed(self, relist: bool, resource_version: str) -> None:
        with self._lock:
            first, self.synced = not self.synced, True
            self.last_list_at = self._clock.now()
            self.resource_version = storable(resource_version)
            if relist:
                self.relists += 1
            else:
                self.lists += 1
        if first:
            self._changed()

    def mark_error(self, message: str, bad_event: bool = False) -> None:
        with self._lock:
            self.errors += 1
            if bad_event:
                self.bad_events += 1
            # What a server sent may be quoted here: stored as history, so made storable.
            self.last_error = storable(message)

    def hold(self, held: bool) -> None:
        """Set around each hand-over to the ingest queue (which blocks while auditd cannot
        write its history). An attribute or two for a watching stream's event: cheap enough
        for every event.

        A stream not watching that was held meanwhile waited for auditd's own writer, not
        for the cluster. On its first list, a page taken says the cluster answers: it is
        disconnected from now on, if at all. Listed before (a relist, a resume), the time held
        does not count towards its disconnection, which says how long the cluster has not
        answered. Counted, a relist held page by page for blind_after (a database down, then
        its backlog) was reconnecting, then blind, between its pages: an audit-blind-spot
        blaming a cluster that answered every request."""
        if held:
            self.held_since = self._clock.now()
            return
        since, self.held_since = self.held_since, None
        down = self.disconnected_since  # only this watcher's thread sets it
        if since is None or down is None:
            return  # the common case: a watching stream's event
        with self._lock:  # for snapshot(): the three fields read together
            now = self._clock.now()
            self.disconnected_since = down + (now - since) if self.synced else now

    def mark_absent(self) -> None:
        with self._lock:
            was, self.absent = self.absent, True
            self.connected = False
            self.disconnected_since = None  # not served is not a blind spot
        if not was:
            self._changed()

    def mark_present(self) -> None:
        with self._lock:
            was, self.absent = self.absent, False
            self.disconnected_since = self._clock.now()
        if was:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def mark_disconnected(self) -> None:
        with self._lock:
            if self.connected or self.disconnected_since is None:
                self.disconnected_since = self._clock.now()
            self.connected = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")
            }


# The pseudo-kind under which stream health enters the inventory, so that a blind spot gets
# transitions, history and rule verdicts exactly like a watched object does.
AUDIT_STREAM = "AuditStream"
# The AuditStream that stands for auditd itself: "down" while it was not running at all.
AUDITD_ITSELF = "auditd"


def stream_state(
    h: dict[str, Any], now: datetime, blind_after: timedelta, stale_after: timedelta
) -> str:
    """The coarse state that history records: listing, ok, reconnecting, blind or absent.

    A stream that has not handed over its first complete list in this process is ``listing``:
    until it has, what auditd holds of that kind on that cluster is partial (at a first start,
    a volume's PVC and PV can be in while its VolumeReplication's page is not), or last-known
    (after a restart), so that cluster's verdicts wait, unknown, as they do while it is
    ``reconnecting``. A short disconnection (a dropped connection, a watch the server ended) is
    ``ok``: the watch resumes from its resourceVersion and misses nothing. One longer than
    ``stale_after`` is ``reconnecting``: nothing is lost yet, but what auditd holds of that
    cluster is its last-known state, not its current one, so verdicts that weigh it against the
    peer wait (the day a site is lost, its last PVC/VR must not count as present). One that has
    not been watching for ``blind_after`` leaves auditd ``blind`` (an alert); so does one that
    has never listed and whose attempts fail: a cluster auditd has never seen is unknown from
    the first failure, never "ok".
    """
    if h.get("absent"):
        return "absent"
    synced = h.get("synced")
    if h.get("held_since") is not None:
        # Waiting on auditd's own history writer, not on the cluster: when the writer takes
        # events again, the stream goes on from where it stopped (or relists), missing nothing.
        return "ok" if synced else "listing"
    if h.get("connected"):
        return "ok"
    if not synced and h.get("errors"):
        return "blind"  # never reached, and it failed already: nothing there is known
    since = h.get("disconnected_since")
    if since is not None and now - since >= blind_after:
        return "blind"
    if not synced:
        return "listing"
    if since is not None and now - since >= stale_after:
        return "reconnecting"
    return "ok"


def health_rows(
    streams: list[dict[str, Any]], at: datetime, blind_after: timedelta, stale_after: timedelta
) -> list[dict[str, Any]]:
    """Each stream's health as stored (``stream_health``): its snapshot, and its state at ``at``."""
    return [
        {
            "cluster": h["cluster"],
            "kind": h["kind"],
            "state": stream_state(h, at, blind_after, stale_after),
            "connected": h["connected"],
            "synced": h["synced"],
            "last_event_at": h["last_event_at"],
            "last_list_at": h["last_list_at"],
            "disconnected_since": h["disconnected_since"],
            "lists": h["lists"],
            "relists": h["relists"],
            "errors": h["errors"],
            "bad_events": h["bad_events"],
            "last_error": h["last_error"],
            "resource_version": h["resource_version"],
            "reported_at": at,
        }
        for h in streams
    ]


# Stream states in which that cluster's objects are not known to be current.
NOT_CURRENT = frozenset({"listing", "reconnecting", "blind"})
