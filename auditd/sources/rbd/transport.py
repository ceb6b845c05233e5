"""Run `rbd` against one site: locally (`direct`) or in the Rook toolbox pod (`exec`).

Arguments are always lists and pool names are validated: no shell is involved anywhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from auditd.config import ClusterConfig
from auditd.logs import scrub
from auditd.sources.text import storable

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: bytes
    stderr: str
    duration: float


class ProbeFailure(Exception):
    """A probe that produced no usable answer. ``kind`` is stable, ``message`` is safe to show."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = storable(scrub(message))[:500]


class Transport(Protocol):
    def run(self, args: list[str], timeout: float) -> CommandResult: ...


def classify_failure(rc: int, stderr: str) -> ProbeFailure:
    """Name what went wrong from `rbd`'s exit status and message (the errno is in both)."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    low = stderr.lower()
    if "error opening pool" in low or (rc == 2 and "pool" in low):
        kind = "no-such-pool"
    elif rc == 2 or "no such file" in low:
        kind = "no-such-image"
    elif rc == 22 and "mirroring not enabled" in low:
        kind = "mirroring-disabled"
    elif rc == 30 or "read-only" in low:
        kind = "read-only"
    elif rc == 13 or "permission denied" in low or "auth" in low or "not permitted" in low:
        kind = "auth"
    elif rc == 110 or "timed out" in low or "connect" in low:
        kind = "unreachable"
    else:
        kind = "error"
    return ProbeFailure(kind, f"rc {rc}: {text}")


def validate_pool(pool: str) -> str:
    if not POOL_NAME.match(pool):
        raise ProbeFailure("invalid-pool", f"refusing pool name {pool!r}")
    return pool


class DirectTransport:
    """`rbd` on this host, with a per-cluster ceph.conf and a read-only cephx user's keyring.

    Needs no Kubernetes RBAC at all; the cephx caps it needs are in the README.
    """

    def __init__(
        self,
        conf: Path,
        user: str,
        keyring: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.base = [*(command or ["rbd"]), "--conf", str(conf), "--id", user]
        if keyring is not None:
            self.base += ["--keyring", str(keyring)]

    def run(self, args: list[str], timeout: float) -> CommandResult:
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [*self.base, *args],
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProbeFailure("timeout", f"no answer within {timeout:.0f}s") from None
        except OSError as e:
            raise ProbeFailure("error", f"cannot run {self.base[0]}: {e.strerror}") from None
        return CommandResult(
            proc.returncode,
            proc.stdout,
            proc.stderr.decode("utf-8", "replace"),
            time.monotonic() - start,
        )


class ExecTransport:
    """`rbd` inside the Rook toolbox pod, through the Kubernetes exec API (`pods/exec` RBAC).

    The pod is found by label, like `kubectl exec deploy/rook-ceph-tools`; a pod that is gone
    (rescheduled, deleted) is looked up again on the next call.
    """

    def __init__(
        self,
        api_client: Callable[[], Any],
        namespace: str,
        selector: str,
        container: str | None = None,
    ) -> None:
        self._api_client = api_client
        self.namespace = namespace
        self.selector = selector
        self.container = container
        self._pod: str | None = None

    def _find_pod(self, core: Any) -> str:
        resp = core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _preload_content=False
        )
        pods = json.loads(resp.data).get("items") or []
        running = sorted(
            p["metadata"]["name"]
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
            and not (p.get("metadata") or {}).get("deletionTimestamp")
        )
        if not running:
            raise ProbeFailure(
                "exec", f"no running toolbox pod ({self.selector}) in namespace {self.namespace}"
            )
        return str(running[0])

    def run(self, args: list[str], timeout: float) -> CommandResult:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        start = time.monotonic()
        try:
            core = client.CoreV1Api(self._api_client())
            if self._pod is None:
                self._pod = self._find_pod(core)
            kwargs: dict[str, Any] = {"container": self.container} if self.container else {}
            ws = stream(
                core.connect_get_namespaced_pod_exec,
                self._pod,
                self.namespace,
                command=["rbd", *args],
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                binary=True,
                **kwargs,
            )
        except ProbeFailure:
            raise
        except ApiException as e:
            self._pod = None  # gone or replaced: find it again next time
            raise ProbeFailure("exec", f"exec into toolbox failed: HTTP {e.status}") from None
        except Exception as e:  # websocket handshake errors, refused connections
            self._pod = None
            raise ProbeFailure("exec", f"exec into toolbox failed: {type(e).__name__}") from None
        try:
            while ws.is_open():
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise ProbeFailure("timeout", f"no answer within {timeout:.0f}s")
                ws.update(timeout=min(left, 1.0))
            out, err = ws.read_stdout(), ws.read_stderr()
            rc = ws.returncode
        finally:
            ws.close()
        return CommandResult(
            int(rc if rc is not None else -1),
            out if isinstance(out, bytes) else str(out).encode(),
            err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err),
            time.monotonic() - start,
        )


def transport_for(cluster: ClusterConfig) -> Transport:
    """How `rbd` reaches this cluster's Ceph, as configured (its ``ceph`` section)."""
    ceph = cluster.ceph
    assert ceph is not None
    if ceph.transport == "exec":
        clients: list[Any] = []

        def api() -> Any:  # one client per cluster, made on first use, kept
            from auditd.sources.kube.client import api_client_for

            if not clients:
                clients.append(api_client_for(cluster))
            return clients[0]

        return ExecTransport(api, ceph.namespace, ceph.toolbox_selector, ceph.container)
    assert ceph.conf is not None
    return DirectTransport(ceph.conf, ceph.user, ceph.keyring, ceph.rbd_command)
