"""auditd's own list+watch loop for one kind on one cluster.

Why not ``kubernetes.watch.Watch().stream()``: with raw dicts it raises KeyError on ERROR events,
it never advances its resourceVersion (so its silent reconnect replays old events), and it
hides one 410 behind a retry with the same stale version. This loop is the reflector's:

* a paged, consistent list (``limit``/``continue``), handed over as one ``Snapshot``;
* a watch from the list's resourceVersion with bookmarks, tracking the version of every
  event and bookmark, so any resume starts exactly where the last one stopped;
* 410 Expired (HTTP or an ERROR event) and 504 ResourceVersionTooLarge: relist;
* an expired continue token: restart the list;
* connection errors, read timeouts, 429 and 5xx: capped exponential backoff with jitter, then
  resume from the last resourceVersion;
* a server-side ``timeoutSeconds`` end: resume at once, no relist.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import urllib3

from auditd import codec
from auditd.clock import SYSTEM, Clock
from auditd.config import ClusterConfig, WatchConfig
from auditd.logs import Spell
from auditd.retry_after import retry_after as read_retry_after
from auditd.sources.kube.client import ClusterUnavailable, api_client_for
from auditd.sources.kube.events import (
    Facts,
    KubeEvent,
    ListSource,
    Obj,
    ObjectEvent,
    Observed,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
)
from auditd.sources.kube.health import StreamHealth
from auditd.sources.kube.kinds import Kind
from auditd.sources.kube.observe import observe
from auditd.sources.text import storable

log = logging.getLogger(__name__)
# Jitter from a generator of its own: the global one belongs to whoever embeds or tests auditd.
_JITTER = random.Random()

# An HTTP status that is not worth a tight retry: credentials, RBAC, a missing CRD.
_SLOW_RETRY = {401, 403, 404}
# What a watch request gets when the server cannot parse its resourceVersion (422 Invalid;
# 400 from some proxies and older servers).
_RV_REJECTED = {400, 422}


class _Relist(Exception):
    """The watch lost its place in history: list again."""


class _Resume(Exception):
    """A transient failure: back off, then resume the watch from the last resourceVersion."""

    def __init__(self, message: str, retry_after: float | None = None, slow: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.slow = slow


class Backoff:
    """Capped exponential backoff with full jitter; resets after a healthy stream."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum = initial, maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        cap = min(self.maximum, self.initial * (2.0**self.attempt))
        self.attempt += 1
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def reset(self) -> None:
        self.attempt = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    # Decoding a large list creates millions of containers; the cyclic GC would scan them
    # repeatedly for nothing (measured 3x slower in research). Nothing here makes cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")[:300]
    except (ValueError, AttributeError):
        return body[:120].decode("utf-8", "replace")


# While a stream stays bad, a summary line this often (seconds).
BAD_SUMMARY_EVERY = 300.0


class ListWatcher:
    """Runs list+watch for one kind on one cluster until ``stop()``; hands events to ``emit``."""

    def __init__(
        self,
        cluster: ClusterConfig,
        kind: Kind,
        settings: WatchConfig,
        emit: Callable[[KubeEvent], None],
        health: StreamHealth,
        normalize: Callable[[str, Obj], Facts],
        label_selector: str | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.kind = kind
        self.settings = settings
        self._emit = emit
        self.health = health
        self.normalize = normalize
        self.label_selector = label_selector
        # Namespace filters apply client-side: one cluster-wide watch per kind keeps one
        # resourceVersion stream, and a namespace never changes for an object.
        self._include = frozenset(settings.namespaces)
        self._exclude = frozenset(settings.exclude_namespaces)
        self._stopping = threading.Event()
        self._response: Any = None
        self._api: Any = None
        self._listed_once = False
        # The version of the last event or bookmark handed over: every resume starts here.
        # It lives on the instance because a dropped stream raises out of _watch mid-way.
        self._rv: str | None = None
        self._backoff = Backoff(
            settings.backoff_initial.total_seconds(), settings.backoff_max.total_seconds()
        )
        self._log_extra = {"cluster": cluster.name, "kind": kind.kind}
        # The current spell of failures, for one line per spell, not per try.
        self._spell = Spell(log, summary_every=BAD_SUMMARY_EVERY, extra=self._log_extra)
        self._last_relist = float("-inf")
        self._skipped, self._skip_logged = 0, float("-inf")

    def emit(self, event: KubeEvent) -> None:
        """Hand over one event; the ingest queue blocks while auditd cannot write its history,
        and stream health says the stream is held by auditd, not blind."""
        self.health.hold(True)
        try:
            self._emit(event)
        finally:
            self.health.hold(False)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self._stopping.set()
        resp = self._response
        if resp is not None:
            # Unblocks a read that is waiting on the socket in the watcher thread.
            with contextlib.suppress(Exception):
                resp.shutdown()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        while not self.stopping:
            try:
                if self._api is None:
                    self._api = api_client_for(self.cluster)
                if self._rv is None:
                    if self.kind.group and not self._served():
                        self._absent()
                        continue
                    self._rv = self._list()
                    self._recovered()
                self._watch()
            except _Relist as e:
                log.info("relisting: %s", e, extra=self._log_extra)
                self._rv = None
                now = time.monotonic()
                if now - self._last_relist < 5.0:
                    # Relisting again at once (a server that rejects the version its own list
                    # gave): back off like any other failure instead of spinning.
                    self._stopping.wait(self._backoff.next())
                self._last_relist = now
            except _Resume as e:
                self._fail(str(e), e.retry_after, slow=e.slow)
            except ClusterUnavailable as e:
                self._api = None
                self._fail(f"cluster unavailable: {e}", slow=True)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if not self.stopping:
                    self._fail(f"connection: {type(e).__name__}: {_short(e)}")
            except Exception as e:  # a bug must not kill the stream for months
                log.exception("unexpected error in watch loop", extra=self._log_extra)
                self._fail(f"internal: {type(e).__name__}")
        self.health.mark_disconnected()

    def list_once(self) -> str | None:
        """One complete list and no watch (`auditd check`): the events go to ``emit``, and the
        stream health says what happened. Returns None when the kind was listed or is not
        served (an absent CRD: its objects cannot exist), else why it could not be seen."""
        try:
            if self._api is None:
                self._api = api_client_for(self.cluster)
            if self.kind.group and not self._served():
                self.health.mark_absent()
                return None
            self._list()
            return None
        except ClusterUnavailable as e:
            why = f"cluster unavailable: {e}"
        except (_Relist, _Resume) as e:
            why = str(e)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            why = f"connection: {type(e).__name__}: {_short(e)}"
        self.health.mark_disconnected()
        self.health.mark_error(why)
        return why

    def _served(self) -> bool:
        """Discovery: does this cluster serve the kind's group/version and plural?"""
        resp = self._get(
            [], self.settings.read_timeout.total_seconds(), self.kind.group_version_path
        )
        if resp.status == 404:
            resp.release_conn()
            return False
        self._check_status(resp)
        try:
            doc = codec.loads(resp.data)
            served = any(r.get("name") == self.kind.plural for r in doc.get("resources") or [])
        except (ValueError, AttributeError):
            raise _Resume("discovery answer is not an APIResourceList") from None
        if served and self.health.absent:
            log.info("%s is now served; watching it", self.kind.kind, extra=self._log_extra)
            self.health.mark_present()
        return served

    def _absent(self) -> None:
        """The CRD is not installed: say so once, look again now and then."""
        if not self.health.absent:
            level = logging.INFO if not self.kind.required else logging.WARNING
            log.log(
                level,
                "%s (%s) is not served by this cluster; checking again every %s",
                self.kind.kind,
                self.kind.api_version,
                self.settings.crd_recheck,
                extra=self._log_extra,
            )
            self.health.mark_absent()
            if self._listed_once:
                # The CRD was removed, and its objects with it: an empty, complete list.
                now = self.clock.now()
                self.emit(SnapshotStart(self.cluster.name, self.kind.kind, "relist", now))
                self.emit(SnapshotEnd(self.cluster.name, self.kind.kind, "", "relist", now))
        self._backoff.reset()
        self._stopping.wait(self.settings.crd_recheck.total_seconds())

    def _fail(self, message: str, retry_after: float | None = None, slow: bool = False) -> None:
        self.health.mark_disconnected()
        self.health.mark_error(message)
        delay = self._backoff.next()
        if slow:
            delay = max(delay, self._backoff.maximum)
        if retry_after is not None:
            delay = max(delay, retry_after)
        # One line when the stream goes bad, a summary now and then while it stays bad, one
        # when it recovers: an unreachable cluster must not drown the log (it is an alert).
        detail = f"{message}; retrying (backoff up to {self._backoff.maximum:.0f}s)"
        if not self._spell.failed(detail, time.monotonic()):
            log.debug("%s; retrying in %.1fs", message, delay, extra=self._log_extra)
        self._stopping.wait(delay)

    def _recovered(self) -> None:
        self._spell.succeeded(time.monotonic())

    # --------------------------------------------------------------------- HTTP
    def _get(
        self, query: list[tuple[str, Any]], read_timeout: float, path: str | None = None
    ) -> Any:
        """Issue a GET and return the raw urllib3 response (body not yet read)."""
        method, url, headers, _, _ = self._api.param_serialize(
            "GET",
            path or self.kind.collection_path(),
            query_params=query,
            auth_settings=["BearerToken"],
        )
        rest = self._api.call_api(
            method,
            url,
            header_params=headers,
            _request_timeout=(self.settings.connect_timeout.total_seconds(), read_timeout),
        )
        return rest.response

    def _check_status(self, resp: Any) -> None:
        if 200 <= resp.status < 300:
            return
        body = resp.data or b""
        resp.release_conn()
        message = f"HTTP {resp.status} {_status_message(body)}"
        if resp.status == 410:
            raise _Relist(message)
        if resp.status == 404 and self.kind.group:
            # The CRD may have been removed: list again, which asks discovery first.
            self._rv = None
        raise _Resume(message, read_retry_after(resp.headers), slow=resp.status in _SLOW_RETRY)

    def _wanted(self, namespace: str) -> bool:
        if not self.kind.namespaced or not (self._include or self._exclude):
            return True
        return (not self._include or namespace in self._include) and namespace not in self._exclude

    def _observe(self, obj: Any) -> Observed | None:
        """Identity and DR facts of a raw object; None for one without a name. An object
        whose facts cannot be read comes back with a ``problem`` (quarantined downstream)."""
        observed = observe(self.kind.kind, obj, self.normalize)
        if observed is not None and observed.problem is not None:
            self.health.mark_error(f"quarantined {observed.name}: {observed.problem}", True)
        return observed

    # --------------------------------------------------------------------- list
    def _list(self) -> str:
        source: ListSource = "relist" if self._listed_once else "list"
        cont: str | None = None
        rv = ""
        count = 0
        self.emit(SnapshotStart(self.cluster.name, self.kind.kind, source, self.clock.now()))
        while True:
            query: list[tuple[str, Any]] = [("limit", self.settings.page_size)]
            if cont:
                query.append(("continue", cont))
            if self.label_selector:
                query.append(("labelSelector", self.label_selector))
            resp = self._get(query, self.settings.read_timeout.total_seconds())
            try:
                self._check_status(resp)
            except _Relist:
                # An expired continue token: the only consistent answer is a fresh list.
                log.info("continue token expired; restarting the list", extra=self._log_extra)
                cont, count = None, 0
                self.emit(
                    SnapshotStart(self.cluster.name, self.kind.kind, source, self.clock.now())
                )
                continue
            with gc_paused():
                try:
                    page = codec.loads(resp.data)
                    meta = page.get("metadata") or {}
                    rv = str(meta["resourceVersion"])
                    items = [
                        o
                        for o in map(self._observe, page.get("items") or [])
                        if o is not None and self._wanted(o.namespace)
                    ]
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise _Resume("list response is not a valid list") from None
            count += len(items)
            self.emit(
                SnapshotPage(self.cluster.name, self.kind.kind, items, source, self.clock.now())
            )
            cont = meta.get("continue")
            if not cont:
                break
        self.emit(SnapshotEnd(self.cluster.name, self.kind.kind, rv, source, self.clock.now()))
        self._listed_once = True
        self.health.mark_listed(source == "relist", rv)
        log.info(
            "%s %d objects at resourceVersion %s",
            "relisted" if source == "relist" else "listed",
            count,
            rv,
            extra=self._log_extra,
        )
        return rv

    # -------------------------------------------------------------------- watch
    def _watch(self) -> None:
        assert self._rv is not None
        timeout = int(self.settings.server_timeout.total_seconds())
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", self._rv),
            ("allowWatchBookmarks", "true"),
            # Randomized like client-go so that many watchers do not reconnect in lockstep.
            ("timeoutSeconds", _JITTER.randint(max(1, timeout // 2), max(1, timeout))),
        ]
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        resp = self._get(query, self.settings.read_timeout.total_seconds())
        if resp.status in _RV_REJECTED:
            # The server does not accept the version we would resume from (a garbage rv in a
            # bookmark, say): resuming again would be refused forever, so start from a list.
            body = resp.data or b""
            resp.release_conn()
            self.health.mark_error(f"resourceVersion {self._rv[:40]!r} rejected", bad_event=True)
            raise _Relist(f"HTTP {resp.status} {_status_message(body)}")
        self._check_status(resp)
        self._response = resp
        if self.stopping:
            resp.shutdown()
        self.health.mark_connected()
        self._recovered()
        healthy_since = time.monotonic()
        try:
            buf = b""
            for chunk in resp.stream(65536, decode_content=False):
                lines = (buf + chunk).split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if line.strip():
                        self._handle_line(line)
                # A stream that has carried events for a while has earned a fresh backoff.
                if time.monotonic() - healthy_since > 10:
                    self._backoff.reset()
        finally:
            self._response = None
            resp.release_conn()
        # A clean end: the server's timeoutSeconds (or its own request timeout). Resume.
        self._backoff.reset()

    def _handle_line(self, line: bytes) -> None:
        try:
            event = codec.loads(line)
            etype = event["type"]
            obj = event["object"]
            if not isinstance(obj, dict):
                raise TypeError("object is not a mapping")
        except (ValueError, KeyError, TypeError) as e:
            # We cannot know what this line was; resuming from the last good resourceVersion
            # makes the server send it again, so nothing is skipped.
            self.health.mark_error(f"garbage watch line: {type(e).__name__}", bad_event=True)
            raise _Resume(f"undecodable watch line ({len(line)} bytes)") from None
        if etype == "ERROR":
            causes = (obj.get("details") or {}).get("causes") or []
            too_large = any(c.get("reason") == "ResourceVersionTooLarge" for c in causes)
            if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone") or too_large:
                raise _Relist(f"{obj.get('code')} {obj.get('reason')}: {obj.get('message', '')}")
            raise _Resume(f"watch ERROR event {obj.get('code')} {obj.get('reason')}")
        meta = obj.get("metadata")
        new_rv = (
            str(meta["resourceVersion"])
            if isinstance(meta, dict) and meta.get("resourceVersion")
            else None
        )
        if etype == "BOOKMARK":
            self._advance(new_rv)
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            self._skip(f"unknown event type {storable(str(etype))[:32]!r}")
            self._advance(new_rv)
            return
        observed = self._observe(obj) if new_rv else None
        if observed is None:
            self._skip(f"{etype} event without name/resourceVersion")
            self._advance(new_rv)
            return
        now = self.clock.now()
        if self._wanted(observed.namespace):
            self.emit(ObjectEvent(self.cluster.name, self.kind.kind, etype, observed, now))
        self._advance(new_rv, now)

    def _skip(self, what: str) -> None:
        """A bad event, counted in stream health; logged at most once a minute per stream, so
        that a server sending garbage cannot flood the log."""
        self.health.mark_error(f"skipped: {what}", bad_event=True)
        self._skipped += 1
        now = time.monotonic()
        if now - self._skip_logged >= 60.0:
            log.warning("skipping %s (%d bad events skipped in the last minute or so)", what,
                        self._skipped, extra=self._log_extra)  # fmt: skip
            self._skip_logged, self._skipped = now, 0

    def _advance(self, rv: str | None, at: datetime | None = None) -> None:
        if rv:
            self._rv = rv
            self.health.mark_event(rv, at)


def _short(e: BaseException) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."
