"""Build an API client for one configured cluster, with errors that say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from auditd.config import ClusterConfig


class ClusterUnavailable(Exception):
    """The cluster cannot be reached or its credentials cannot be loaded. The message is safe to log."""


def api_client_for(cluster: ClusterConfig) -> Any:
    """An ``ApiClient`` for the cluster's kubeconfig and context.

    Without a kubeconfig path: the in-cluster service account when running in a pod, else
    ``~/.kube/config``.
    """
    try:
        if cluster.kubeconfig is None:
            try:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return client.ApiClient(configuration=cfg)
            except ConfigException:
                path = Path("~/.kube/config").expanduser()
        else:
            path = cluster.kubeconfig.expanduser()
        if not path.exists():
            raise ClusterUnavailable(f"kubeconfig {path} not found")
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=cluster.context
        )
    except ClusterUnavailable:
        raise
    except ConfigException as e:
        # The loader's messages name contexts and keys, never credential values.
        raise ClusterUnavailable(f"kubeconfig: {_first_line(str(e))}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClusterUnavailable(f"kubeconfig unreadable: {type(e).__name__}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid"
