"""The operations endpoint: /metrics (Prometheus), /healthz (alive), /readyz (synced).

A small threaded HTTP server on its own port. It only reads: the metrics registry and two
callables the runner provides; it never touches the pipeline's state directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# (ok, reason): the reason is what a kubectl describe of a failing probe will show.
Check = Callable[[], tuple[bool, str]]


def readiness(streams: Iterable[Mapping[str, Any]]) -> tuple[bool, str]:
    """Ready once every reachable cluster has finished its first sync (each of its streams
    listed, or found its CRD absent). A cluster none of whose streams ever synced and that
    keeps failing is unreachable: it does not hold readiness back (the blind spot is an
    alert, not a reason to restart auditd)."""
    by_cluster: dict[str, list[Mapping[str, Any]]] = {}
    for h in streams:
        by_cluster.setdefault(str(h["cluster"]), []).append(h)
    waiting, unreachable = [], []
    for cluster, hs in sorted(by_cluster.items()):
        if all(h["synced"] or h["absent"] for h in hs):
            continue
        if not any(h["synced"] or h["connected"] for h in hs) and all(h["errors"] for h in hs):
            unreachable.append(cluster)
        else:
            waiting.append(cluster)
    if waiting:
        return False, f"first sync not done: {', '.join(waiting)}"
    note = f" (unreachable, not waited for: {', '.join(unreachable)})" if unreachable else ""
    return True, f"ready: {len(by_cluster) - len(unreachable)} cluster(s) synced{note}"


class OpsServer:
    def __init__(
        self, listen: str, registry: CollectorRegistry, healthy: Check, ready: Check
    ) -> None:
        host, _, port = listen.rpartition(":")
        registry_, healthy_, ready_ = registry, healthy, ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, reason = (healthy_ if path == "/healthz" else ready_)()
                    self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                pass  # a scrape every 15 s is not news

        self._server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
