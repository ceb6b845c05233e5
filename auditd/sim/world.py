"""The simulated pair's config: one place that writes it, for the demo, the tests and bench/."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A loopback port free now, for a simulated daemon's ops server that the caller scrapes
    (``127.0.0.1:0`` lets the daemon pick one, but then only the daemon knows it). Another
    process could take it before the daemon binds it; on a test machine, none does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def pair_config_toml(
    kubeconfig: Path,
    database_url: str,
    *,
    data_dir: Path | None = None,
    contexts: tuple[str, str] = ("dr1", "dr2"),
    slack_base_url: str | None = None,
    slack_channel: str = "#dr-alerts",
    sections: dict[str, dict[str, object]] | None = None,
    log_level: str = "INFO",
    pools: tuple[str, ...] = (),
    ceph: dict[str, dict[str, str]] | None = None,
    hub_context: str | None = None,
) -> str:
    """A config for clusters dr1 (primary) and dr2 (secondary) behind one kubeconfig, and with
    ``hub_context`` a Ramen hub named hub, the pair's.

    Without ``slack_base_url`` Slack is disabled. ``sections`` adds or overrides keys of
    top-level tables, e.g. ``{"watch": {"blind_spot_after": "2s"}}``; ``ceph`` gives clusters
    their Ceph access (``{"dr1": {"conf": ..., "user": ..., "keyring": ...}}``).
    """
    tables: dict[str, dict[str, object]] = {
        "watch": {"backoff_initial": "100ms", "backoff_max": "1s"},
        "slack": {"channel": slack_channel, "base_url": slack_base_url}
        if slack_base_url
        else {"enabled": False},
        # The simulator announces at once; grouping still merges what fires together.
        "alerts": {"group_wait": "0s", "group_interval": "0s"},
        # Any free port: several simulated daemons may run side by side.
        "ops": {"listen": "127.0.0.1:0"},
    }
    for name, values in (sections or {}).items():
        tables.setdefault(name, {}).update(values)
    lines = [f"database_url = {_toml_value(database_url)}", f"log_level = {_toml_value(log_level)}"]
    if data_dir is not None:
        lines.append(f"data_dir = {_toml_value(data_dir)}")
    for name, context, role in (("dr1", contexts[0], "primary"), ("dr2", contexts[1], "secondary")):
        lines += [
            "",
            "[[clusters]]",
            f"name = {_toml_value(name)}",
            f"kubeconfig = {_toml_value(kubeconfig)}",
            f"context = {_toml_value(context)}",
            f"role = {_toml_value(role)}",
        ]
        if ceph and name in ceph:
            access = ", ".join(f"{k} = {_toml_value(v)}" for k, v in ceph[name].items())
            lines.append(f"ceph = {{ {access} }}")
    if hub_context is not None:
        lines += [
            "",
            "[[clusters]]",
            'name = "hub"',
            f"kubeconfig = {_toml_value(kubeconfig)}",
            f"context = {_toml_value(hub_context)}",
            'role = "hub"',
        ]
    lines += ["", "[[pairs]]", 'name = "dr1-dr2"', 'clusters = ["dr1", "dr2"]']
    if hub_context is not None:
        lines.append('hub = "hub"')
    if pools:
        lines.append("pools = [" + ", ".join(_toml_value(p) for p in pools) + "]")
    for name, values in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
