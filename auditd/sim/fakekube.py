"""A stateful fake Kubernetes API server on loopback.

The real ``kubernetes`` client talks to it over HTTP, so the daemon's watch loop is exercised
against the real wire protocol rather than a mocked client: paged lists with consistent
snapshots, watches that replay history from a resourceVersion, 410 Expired after compaction,
504 ResourceVersionTooLarge, bookmarks, ``timeoutSeconds``, abrupt drops and clean ends.

The demo uses it as the "simulated cluster"; the tests use it with the fault hooks
(``fail_next``, ``drop_watches``, ``end_watches``, ``inject``, ``compact``, ``stall_next_watch``,
``stall_next_list``).
Only the standard library is used, so the server runs anywhere the daemon runs.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import hashlib
import json
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from auditd.clock import SYSTEM
from auditd.sources.kube.kinds import PV, PVC, STORAGE_CLASS, VR, VRC, Kind

# How often the server loop looks for a shutdown: stop() waits up to this (the standard
# library's 0.5 s, paid twice per test, was most of many tests' time).
POLL = 0.02

Obj = dict[str, Any]


# The fake serves the daemon's own kind catalogue, so the two can never disagree on a path.
ResourceType = Kind
DEFAULT_RESOURCES = (PVC, PV, VR, VRC, STORAGE_CLASS)  # what every cluster serves
# Pods are served for the exec transport's toolbox lookup and `pods/exec`.
POD = Kind("", "v1", "pods", "Pod", True)
# Leases, for replicas that elect their leaders where auditd runs (daemon/lease.py).
LEASE = Kind("coordination.k8s.io", "v1", "leases", "Lease", True)
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# (namespace, pod, container, command) -> (exit code, stdout, stderr)
ExecHandler = Callable[[str, str, str | None, list[str]], tuple[int, bytes, bytes]]


def _status(code: int, reason: str, message: str, **extra: Any) -> Obj:
    # Key order follows Go's metav1.Status so the bytes match what a real server sends.
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": extra.pop("metadata", {}),
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    body.update(extra)
    body["code"] = code
    return body


def expired_event(message: str = "The resourceVersion for the provided watch is too old.") -> Obj:
    return {"type": "ERROR", "object": _status(410, "Expired", message)}


def too_large_event(requested: int, current: int) -> Obj:
    return {
        "type": "ERROR",
        "object": _status(
            504,
            "Timeout",
            f"Timeout: Too large resource version: {requested}, current: {current}",
            details={"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large"}]},
        ),
    }


def _parse_bool(value: str | None) -> bool:
    # The API server treats anything but "0"/"false" (any case) as true; kubernetes 36.x sends "True".
    return value is not None and value.lower() not in ("0", "false")


def _labels_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "==" in term or "=" in term:
            k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(selector: str, obj: Obj) -> bool:
    meta = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        k, v = term.split("!=" if negate else ("==" if "==" in term else "="), 1)
        actual = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
        }.get(k.strip())
        if (actual == v.strip()) == negate:
            return False
    return True


def _path(key: Key) -> str:
    return f"{key[1]}/{key[2]}"


def _page(
    plural: str, state: dict[Key, Obj], order: list[str], query: _Query, after: str, limit: int
) -> tuple[list[Key], int]:
    """The keys of one page (``limit`` 0: all) after the path ``after``, in ``order``, and how
    many more match (with a selector: 1 if any does, as the count is not served then)."""
    lo, hi = 0, len(order)
    if query.namespace is not None:  # one namespace's paths are contiguous
        lo = bisect.bisect_left(order, f"{query.namespace}/")
        hi = bisect.bisect_left(order, f"{query.namespace}0", lo)  # "0" follows "/"
    if after:
        lo = max(lo, bisect.bisect_right(order, after))
    selected = bool(query.label_selector or query.field_selector)
    page: list[Key] = []
    for i in range(lo, hi):
        namespace, _, name = order[i].partition("/")
        key = (plural, namespace, name)
        if selected and not query.matches(state[key]):
            continue
        if limit and len(page) == limit:
            return page, (1 if selected else hi - i)
        page.append(key)
    return page, 0


@dataclass
class _Query:
    namespace: str | None
    label_selector: str
    field_selector: str

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.label_selector and not _labels_match(self.label_selector, meta.get("labels") or {}):
            return False
        return not self.field_selector or _fields_match(self.field_selector, obj)


@dataclass
class _Watcher:
    resource: ResourceType
    query: _Query
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)


@dataclass
class _Fault:
    status: int
    body: Obj | None
    retry_after: int | None
    watch: bool | None
    plural: str | None
    stall: float = 0.0

    def applies(self, plural: str, is_watch: bool) -> bool:
        return (self.watch is None or self.watch == is_watch) and (
            self.plural is None or self.plural == plural
        )


Key = tuple[str, str, str]  # plural, namespace ("" when cluster-scoped), name


class FakeKubeAPI:
    """One simulated cluster. Start it, point a kubeconfig at ``url``, and change state with the hooks."""

    def __init__(
        self,
        name: str = "cluster",
        resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
        bookmark_interval: float = 60.0,
        token: str | None = None,
        too_large_wait: float = 0.2,
    ) -> None:
        self.name = name
        self.bookmark_interval = bookmark_interval
        self.token = token
        self.too_large_wait = too_large_wait
        self._resources: dict[str, ResourceType] = {r.plural: r for r in resources}
        self._cond = threading.Condition()
        self._rv = 1000
        self._objects: dict[Key, Obj] = {}
        # Each resource's objects in the order lists serve them ("namespace/name", as etcd's
        # keys sort): a page is found by bisection, as a real API server reads a key range,
        # not by sorting everything (paging 150,000 objects was quadratic in this fake).
        self._order: dict[str, list[str]] = {}
        # History for watch replay and snapshot lists: base state at the compaction point, then the log.
        self._base: dict[Key, Obj] = {}
        self._compacted_rv = self._rv
        self._log: list[tuple[int, str, Key, Obj]] = []
        self._watchers: list[_Watcher] = []
        self._faults: list[_Fault] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        # What `kubectl exec` into a pod runs; tests plug in a stand-in for the toolbox.
        self.exec_handler: ExecHandler | None = None
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._write_faults: list[tuple[str, int]] = []  # (plural, HTTP status)
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self, port: int = 0) -> FakeKubeAPI:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL},
            name=f"fakekube-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """The server dies: its listener and every open connection (keep-alive ones too, or a
        client would go on talking to a dead server's handler)."""
        self.drop_watches()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._cond:
            open_ = list(self._connections)
        for conn in open_:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    # --------------------------------------------------------------- resources
    def add_resource(self, resource: ResourceType) -> None:
        """Install a CRD: its paths and discovery entries appear from now on."""
        with self._cond:
            self._resources[resource.plural] = resource

    def install_crd(self, crd: Obj) -> ResourceType:
        """Install a real CustomResourceDefinition document (as `kubectl apply` would)."""
        resource = kind_from_crd(crd)
        self.add_resource(resource)
        return resource

    def remove_resource(self, resource: ResourceType) -> None:
        with self._cond:
            self._resources.pop(resource.plural, None)

    def has_resource(self, plural: str) -> bool:
        with self._cond:
            return plural in self._resources

    # ------------------------------------------------------------------ writes
    def create(self, resource: ResourceType, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = self._key(resource, meta.get("namespace", ""), meta["name"])
        with self._cond:
            if key in self._objects:
                raise KeyError(f"{resource.kind} {key[1]}/{key[2]} already exists")
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now_iso()
            meta["generation"] = 1
            obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
            return self._commit("ADDED", key, obj)

    def replace(self, resource: ResourceType, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        key = self._key(resource, meta.get("namespace", ""), meta["name"])
        with self._cond:
            old = self._objects[key]
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
            if obj.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
            return self._commit("MODIFIED", key, obj)

    def patch(self, resource: ResourceType, namespace: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch (RFC 7386)."""
        with self._cond:
            current = copy.deepcopy(self._objects[self._key(resource, namespace, name)])
        return self.replace(resource, _merge_patch(current, patch))

    def delete(self, resource: ResourceType, namespace: str, name: str) -> None:
        key = self._key(resource, namespace, name)
        with self._cond:
            obj = copy.deepcopy(self._objects[key])
            if obj["metadata"].get("finalizers"):
                obj["metadata"].setdefault("deletionTimestamp", _now_iso())
                self._commit("MODIFIED", key, obj)
            else:
                self._commit("DELETED", key, obj)

    def write(
        self, verb: str, resource: ResourceType, namespace: str, name: str | None, body: Obj
    ) -> tuple[int, Obj]:
        """A create (POST to the collection) or replace (PUT to the object) from a client, with
        the real server's answers: 409 AlreadyExists; 409 Conflict when the body's
        resourceVersion is not the current one (optimistic concurrency, which leader election
        relies on), checked and replaced as one step, as etcd's compare-and-swap."""
        meta = body.setdefault("metadata", {})
        if resource.namespaced:
            meta["namespace"] = namespace or "default"
        if verb == "POST":
            if name is not None or not meta.get("name"):
                return 405, _status(405, "MethodNotAllowed", "POST to a collection")
            try:
                return 201, self.create(resource, body)
            except KeyError:
                msg = f'{resource.plural} "{meta["name"]}" already exists'
                return 409, _status(409, "AlreadyExists", msg)
        if name is None or meta.get("name") != name:
            return 400, _status(400, "BadRequest", "the name in the body must match the URL")
        with self._cond:
            current = self._objects.get(self._key(resource, namespace, name))
            if current is None:
                return 404, _status(404, "NotFound", f'{resource.plural} "{name}" not found')
            sent = meta.get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                msg = (
                    f'Operation cannot be fulfilled on {resource.plural} "{name}": the object'
                    " has been modified; please apply your changes to the latest version and"
                    " try again"
                )
                return 409, _status(409, "Conflict", msg)
            return 200, self.replace(resource, body)

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def _key(self, resource: ResourceType, namespace: str | None, name: str) -> Key:
        return (resource.plural, (namespace or "") if resource.namespaced else "", name)

    def _commit(self, etype: str, key: Key, obj: Obj) -> Obj:
        # Caller holds the lock. One global counter, like the etcd revision.
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        order = self._order.setdefault(key[0], [])
        path = _path(key)
        if etype == "DELETED":
            if self._objects.pop(key, None) is not None:
                del order[bisect.bisect_left(order, path)]
        else:
            if key not in self._objects:
                bisect.insort(order, path)
            self._objects[key] = obj
        self._log.append((self._rv, etype, key, obj))
        resource = self._resources.get(key[0])
        for w in self._watchers:
            if resource is not None and w.resource.plural == key[0] and w.query.matches(obj):
                w.events.put(("event", {"type": etype, "object": _wire(resource, obj)}))
        self._cond.notify_all()
        return copy.deepcopy(obj)

    # -------------------------------------------------------------- test hooks
    def compact(self, upto: int | None = None) -> None:
        """Forget history at or below ``upto`` (default: everything); older rvs then get 410."""
        with self._cond:
            upto = self._rv if upto is None else upto
            keep: list[tuple[int, str, Key, Obj]] = []
            for entry in self._log:
                rv, etype, key, obj = entry
                if rv <= upto:
                    if etype == "DELETED":
                        self._base.pop(key, None)
                    else:
                        self._base[key] = obj
                else:
                    keep.append(entry)
            self._log = keep
            self._compacted_rv = max(self._compacted_rv, upto)

    def drop_watches(self) -> None:
        """Close every watch connection without the final chunk (the client sees a protocol error)."""
        self._control("drop")

    def end_watches(self) -> None:
        """End every watch cleanly, like the server-side request timeout."""
        self._control("end")

    def inject(self, event: Obj | bytes, plural: str | None = None, timeout: float = 30.0) -> None:
        """Send a raw event (a dict, or bytes for garbage) to the open watches.

        Waits for one to be open: right after a client's list its watch may not be connected
        yet (seconds on a loaded machine), and an event sent to no one would vanish silently."""
        self.wait_watchers(1, plural, timeout)
        with self._cond:
            for w in self._watchers:
                if plural is None or w.resource.plural == plural:
                    w.events.put(("raw", event))

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        watch: bool | None = None,
        plural: str | None = None,
        retry_after: int | None = None,
        body: Obj | None = None,
    ) -> None:
        """The next ``count`` matching list/watch requests get this HTTP error."""
        with self._cond:
            for _ in range(count):
                self._faults.append(_Fault(status, body, retry_after, watch, plural))

    def fail_next_write(self, count: int, status: int, plural: str) -> None:
        """The next ``count`` creates/replaces of ``plural`` get this HTTP error."""
        with self._cond:
            self._write_faults += [(plural, status)] * count

    def stall_next_watch(self, seconds: float, plural: str | None = None) -> None:
        """The next watch sends headers and then nothing for ``seconds`` (a hung connection)."""
        with self._cond:
            self._faults.append(_Fault(200, None, None, True, plural, stall=seconds))

    def stall_next_list(self, seconds: float, plural: str | None = None) -> None:
        """The next list answers only after ``seconds`` (a large list on a busy API server)."""
        with self._cond:
            self._faults.append(_Fault(200, None, None, False, plural, stall=seconds))

    def wait_watchers(self, n: int, plural: str | None = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count_watchers(plural) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: {self._count_watchers(plural)} watchers, wanted {n}"
                    )
                self._cond.wait(left)

    def wait_no_watchers(self, plural: str | None = None, timeout: float = 10.0) -> None:
        """Until every watch (of ``plural``) has gone, e.g. after a client stopped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count_watchers(plural) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {self._count_watchers(plural)} watchers left")
                self._cond.wait(left)

    def _count_watchers(self, plural: str | None) -> int:
        return sum(1 for w in self._watchers if plural is None or w.resource.plural == plural)

    def watch_requests(self, plural: str | None = None) -> list[dict[str, str]]:
        with self._cond:
            return [
                q
                for _, path, q in self.requests
                if _parse_bool(q.get("watch")) and (plural is None or path.endswith("/" + plural))
            ]

    def list_requests(self, plural: str | None = None) -> list[dict[str, str]]:
        with self._cond:
            return [
                q
                for _, path, q in self.requests
                if not _parse_bool(q.get("watch"))
                and (plural is None or path.endswith("/" + plural))
            ]

    def _control(self, what: str) -> None:
        with self._cond:
            for w in self._watchers:
                w.events.put((what, None))

    # ----------------------------------------------------------- request side
    def _take_fault(self, plural: str, is_watch: bool) -> _Fault | None:
        with self._cond:
            for i, f in enumerate(self._faults):
                if f.applies(plural, is_watch):
                    return self._faults.pop(i)
        return None

    def _state_at(self, rv: int) -> dict[Key, Obj]:
        # Caller holds the lock and has checked rv >= compacted rv.
        state = dict(self._base)
        for erv, etype, key, obj in self._log:
            if erv > rv:
                break
            if etype == "DELETED":
                state.pop(key, None)
            else:
                state[key] = obj
        return state

    def list_response(
        self, resource: ResourceType, query: _Query, params: dict[str, str]
    ) -> tuple[int, Obj]:
        limit = int(params.get("limit") or 0)
        cont = params.get("continue")
        rv_param = params.get("resourceVersion", "")
        with self._cond:
            start_after = ""
            if cont:
                try:
                    token = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                    snapshot_rv, start_after = int(token["rv"]), str(token["start"])
                except (ValueError, KeyError, TypeError):
                    return 400, _status(400, "BadRequest", "invalid continue token")
                if snapshot_rv < self._compacted_rv:
                    return 410, _status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter.",
                        metadata={"continue": _continue_token(-1, start_after)},
                    )
            elif rv_param in ("", "0"):
                snapshot_rv = self._rv
                if rv_param == "0":
                    limit = 0  # the watch cache ignores limit for rv=0
            else:
                try:
                    snapshot_rv = int(rv_param)
                except ValueError:
                    return 422, _status(422, "Invalid", f"invalid resourceVersion {rv_param!r}")
                if snapshot_rv > self._rv:
                    return 504, _status(
                        504,
                        "Timeout",
                        f"Timeout: Too large resource version: {snapshot_rv}, current: {self._rv}",
                        details={"causes": [{"reason": "ResourceVersionTooLarge"}]},
                    )
                if limit and snapshot_rv < self._compacted_rv:
                    return 410, _status(
                        410, "Expired", "The resourceVersion for the provided list is too old."
                    )
                if not limit:
                    snapshot_rv = self._rv  # not-older-than: serve the latest
            if snapshot_rv == self._rv:
                state, order = self._objects, self._order.get(resource.plural, [])
            else:
                state = self._state_at(snapshot_rv)
                order = sorted(_path(k) for k in state if k[0] == resource.plural)
            page, remaining = _page(resource.plural, state, order, query, start_after, limit)
            items = [_wire(resource, state[k], in_list=True) for k in page]
            meta: Obj = {"resourceVersion": str(snapshot_rv)}
            if remaining:
                meta["continue"] = _continue_token(snapshot_rv, _path(page[-1]))
                if not query.label_selector and not query.field_selector:
                    meta["remainingItemCount"] = remaining
        return 200, {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": meta,
            "items": items,
        }

    def open_watch(
        self,
        resource: ResourceType,
        query: _Query,
        rv_param: str,
        bookmarks: bool,
        initial_end: bool,
    ) -> tuple[_Watcher, list[Obj]]:
        """Register a watcher and compute its backlog under one lock, so no write falls in between."""
        w = _Watcher(resource, query)
        with self._cond:
            backlog: list[Obj] = []
            if rv_param in ("", "0"):
                for key in sorted(self._objects):
                    obj = self._objects[key]
                    if key[0] == resource.plural and query.matches(obj):
                        backlog.append({"type": "ADDED", "object": _wire(resource, obj)})
                if bookmarks and initial_end:
                    backlog.append(self._bookmark(resource, initial_end=True))
            else:
                try:
                    rv = int(rv_param)
                except ValueError:
                    rv = -1
                if rv < self._compacted_rv:
                    backlog.append(
                        expired_event(f"too old resource version: {rv} ({self._compacted_rv + 1})")
                    )
                    w.events.put(("end", None))
                elif rv > self._rv:
                    w.events.put(("too_large", rv))
                else:
                    for erv, etype, key, obj in self._log:
                        if erv > rv and key[0] == resource.plural and query.matches(obj):
                            backlog.append({"type": etype, "object": _wire(resource, obj)})
            self._watchers.append(w)
            self._cond.notify_all()
        return w, backlog

    def close_watch(self, w: _Watcher) -> None:
        with self._cond:
            if w in self._watchers:
                self._watchers.remove(w)
            self._cond.notify_all()

    def _bookmark(self, resource: ResourceType, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj: Obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
        if not resource.group:
            obj.update(
                {
                    "spec": {"resources": {}} if resource.kind == "PersistentVolumeClaim" else {},
                    "status": {},
                }
            )
        return {"type": "BOOKMARK", "object": obj}

    def bookmark(self, resource: ResourceType) -> Obj:
        with self._cond:
            return self._bookmark(resource)

    def discovery(self, path: str) -> Obj | None:
        with self._cond:
            resources = list(self._resources.values())
        if path == "/version":
            return {"major": "1", "minor": "34", "gitVersion": "v1.34.0-auditd-fake"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, set[str]] = {}
            for r in resources:
                if r.group:
                    groups.setdefault(r.group, set()).add(r.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [
                            {"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)
                        ],
                        "preferredVersion": {"groupVersion": f"{g}/{min(vs)}", "version": min(vs)},
                    }
                    for g, vs in sorted(groups.items())
                ],
            }
        members = [r for r in resources if r.group_version_path == path]
        if not members and path != "/api/v1":
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": members[0].api_version if members else "v1",
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
                for r in members
            ],
        }


def kind_from_crd(crd: Obj) -> Kind:
    """The served storage version of a CustomResourceDefinition as a Kind."""
    spec = crd["spec"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    version = next((v for v in versions if v.get("storage")), versions[0])["name"]
    return Kind(
        spec["group"],
        version,
        spec["names"]["plural"],
        spec["names"]["kind"],
        spec["scope"] == "Namespaced",
    )


def _wire(resource: ResourceType, obj: Obj, in_list: bool = False) -> Obj:
    # Typed (core) list items carry no kind/apiVersion; custom resources always do.
    if in_list and not resource.group:
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    return obj


def _continue_token(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_patch(result.get(k), v)
    return result


def _now_iso() -> str:
    return SYSTEM.now().strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the tests read fake.requests instead

    def handle(self) -> None:
        with self.fake._cond:
            self.fake._connections.add(self.connection)
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass  # clients hang up on watches all the time; that is not an error here
        finally:
            with self.fake._cond:
                self.fake._connections.discard(self.connection)

    def do_GET(self) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        exec_match = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec$", split.path)
        if exec_match and self.headers.get("Upgrade", "").lower() == "websocket":
            self._exec(exec_match.group(1), exec_match.group(2), parse_qs(split.query))
            return
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with fake._cond:
            fake.requests.append(("GET", split.path, params))
        if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        disc = fake.discovery(split.path.rstrip("/"))
        if disc is not None:
            self._send_json(200, disc)
            return
        route = self._route(split.path)
        if route is None:
            self._send_json(
                404, _status(404, "NotFound", f"the server could not find {split.path}")
            )
            return
        resource, namespace, name = route
        if name is not None:
            obj = fake.get(resource, namespace or "", name)
            if obj is None:
                self._send_json(
                    404, _status(404, "NotFound", f'{resource.plural} "{name}" not found')
                )
            else:
                self._send_json(200, obj)
            return
        query = _Query(namespace, params.get("labelSelector", ""), params.get("fieldSelector", ""))
        is_watch = _parse_bool(params.get("watch"))
        fault = fake._take_fault(resource.plural, is_watch)
        if fault is not None and not fault.stall:
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            body = fault.body or _status(fault.status, "InternalError", f"injected {fault.status}")
            self._send_json(fault.status, body, headers)
            return
        if is_watch:
            rv_param = params.get("resourceVersion", "")
            if rv_param and not rv_param.isdigit():
                # As the real server: ParseResourceVersion fails before the stream starts.
                self._send_json(
                    422, _status(422, "Invalid", f"invalid resource version: {rv_param[:64]}")
                )
                return
            self._watch(resource, query, params, stall=fault.stall if fault else 0.0)
        else:
            if fault is not None:
                time.sleep(fault.stall)
            code, body = fake.list_response(resource, query, params)
            self._send_json(code, body)

    def do_POST(self) -> None:
        self._write("POST")

    def do_PUT(self) -> None:
        self._write("PUT")

    def _write(self, verb: str) -> None:
        fake = self.fake
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with fake._cond:
            fake.requests.append((verb, path, {}))
        if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        route = self._route(path)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, _status(400, "BadRequest", "the body is not JSON"))
            return
        if route is None or not isinstance(body, dict):
            self._send_json(404, _status(404, "NotFound", f"the server could not find {path}"))
            return
        resource, namespace, name = route
        with fake._cond:
            fault = next((f for f in fake._write_faults if f[0] == resource.plural), None)
            if fault is not None:
                fake._write_faults.remove(fault)
        if fault is not None:
            self._send_json(fault[1], _status(fault[1], "InternalError", f"injected {fault[1]}"))
            return
        code, answer = fake.write(verb, resource, namespace or "", name, body)
        self._send_json(code, answer)

    def _exec(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
        """`pods/exec` over a websocket with the v4.channel.k8s.io subprotocol, as the kubelet
        answers through the API server: stdout on channel 1, stderr on 2, the exit status as a
        Status object on channel 3, then a close frame."""
        fake = self.fake
        with fake._cond:
            fake.requests.append(("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/exec", {}))
        if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        pod = fake.get(POD, namespace, name) if fake.has_resource(POD.plural) else None
        if pod is None or fake.exec_handler is None:
            self._send_json(404, _status(404, "NotFound", f'pods "{name}" not found'))
            return
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        container = query["container"][0] if query.get("container") else None
        rc, out, err = fake.exec_handler(namespace, name, container, query.get("command", []))
        for channel, data in ((1, out), (2, err)):
            for i in range(0, len(data), 65536):
                self._ws_frame(0x2, bytes([channel]) + data[i : i + 65536])
        if rc == 0:
            status: Obj = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: {rc}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]},
            }
        self._ws_frame(0x2, b"\x03" + json.dumps(status).encode())
        self._ws_frame(0x8, b"\x03\xe8")  # close, 1000 normal
        self.close_connection = True

    def _ws_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        self.wfile.write(head + payload)
        self.wfile.flush()

    def _route(self, path: str) -> tuple[ResourceType, str | None, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            return None
        with self.fake._cond:
            resource = self.fake._resources.get(rest[0])
        if resource is None or resource.group != group or resource.version != version:
            return None
        if namespace is not None and not resource.namespaced:
            return None
        return resource, namespace, rest[1] if len(rest) == 2 else None

    def _send_json(self, code: int, body: Obj, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, event: Obj | bytes) -> None:
        data = (
            event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
        )
        self._chunk(data if data.endswith(b"\n") else data + b"\n")

    def _watch(
        self, resource: ResourceType, query: _Query, params: dict[str, str], stall: float
    ) -> None:
        fake = self.fake
        bookmarks = _parse_bool(params.get("allowWatchBookmarks"))
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout else None
        w, backlog = fake.open_watch(
            resource,
            query,
            params.get("resourceVersion", ""),
            bookmarks,
            _parse_bool(params.get("sendInitialEvents")),
        )
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            if stall:
                time.sleep(stall)
            for event in backlog:
                self._event(event)
            next_bookmark = time.monotonic() + fake.bookmark_interval
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    if bookmarks:
                        self._event(fake.bookmark(resource))
                    break
                wait = next_bookmark - now if bookmarks else 1.0
                if deadline is not None:
                    wait = min(wait, deadline - now)
                try:
                    kind, payload = w.events.get(timeout=max(wait, 0.001))
                except queue.Empty:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        self._event(fake.bookmark(resource))
                        next_bookmark = time.monotonic() + fake.bookmark_interval
                    continue
                if kind in ("event", "raw"):
                    self._event(payload)
                elif kind == "too_large":
                    time.sleep(fake.too_large_wait)
                    self._event(too_large_event(payload, fake.resource_version))
                    break
                elif kind == "end":
                    break
                elif kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
            # The terminating zero-length chunk: a clean end of stream. The connection stays
            # open for the next request, as with a real API server.
            self._chunk(b"")
        except (ConnectionError, OSError):
            self.close_connection = True
        finally:
            fake.close_watch(w)


def write_kubeconfig(path: str, contexts: dict[str, str], token: str | None = None) -> None:
    """Write a kubeconfig with one context (and cluster and user) per entry of ``contexts``."""
    import yaml  # the kubernetes client already depends on PyYAML

    user: Obj = {"token": token} if token else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in contexts.items()],
        "users": [{"name": n, "user": user} for n in contexts],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in contexts],
        "current-context": next(iter(contexts)),
    }
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
