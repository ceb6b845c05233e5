"""Build an API client for one configured cluster, with errors that say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from auditd.config import ClusterConfig


class ClusterUnavailable(Exception):
    """The cluster cannot be reached or its credentials cannot be loaded. The message is safe to log."""


def api_client_for(cluster: ClusterConfig) -> Any:
    """An ``ApiClient`` for the cluster's kubeconfig and context."""
    return api_client(cluster.kubeconfig, cluster.context)


def api_client(kubeconfig: Path | None, context: str | None) -> Any:
    """An ``ApiClient`` for a kubeconfig and context.

    Without a kubeconfig path: the in-cluster service account when running in a pod, else
    ``~/.kube/config``.
    """
    cfg = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return _client(cfg)
            except ConfigException:
                path = Path("~/.kube/config").expanduser()
        else:
            path = kubeconfig.expanduser()
        if not path.exists():
            raise ClusterUnavailable(f"kubeconfig {path} not found")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=context, client_configuration=cfg
        )
        return _client(cfg)
    except ClusterUnavailable:
        raise
    except ConfigException as e:
        # The loader's messages name contexts and keys, never credential values.
        raise ClusterUnavailable(f"kubeconfig: {_first_line(str(e))}") from None
    except Exception as e:  # YAML errors, odd shapes: never a traceback per retry
        # Only the type: a loader's message may quote the file, credentials included.
        raise ClusterUnavailable(f"kubeconfig unreadable: {type(e).__name__}") from None


def _client(cfg: Any) -> Any:
    # urllib3's default Retry silently repeats 429/503 answers that carry Retry-After. The watch
    # loop retries HTTP errors with its own backoff and counts each in stream health, so the
    # transport may only retry what happens before an answer: a pooled keep-alive connection
    # the server already closed, or a refused connect. GETs are idempotent, so that is safe.
    cfg.retries = Retry(
        total=2,
        connect=2,
        read=1,
        redirect=0,
        status=0,
        other=0,
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    return client.ApiClient(configuration=cfg)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid"
