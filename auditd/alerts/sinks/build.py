"""Build the configured sinks."""

from __future__ import annotations

import logging

from auditd.alerts.sinks.base import Sink
from auditd.alerts.sinks.console import ConsoleSink
from auditd.alerts.sinks.slack import SlackSink
from auditd.config import Config
from auditd.logs import register_secret

log = logging.getLogger(__name__)


def build_sinks(config: Config, console: bool = False) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    if config.alerts.console or console:
        sinks["console"] = ConsoleSink()
    if config.slack.enabled:
        token = config.slack.token()
        channel = config.slack.resolved_channel()
        if token is not None:
            register_secret(token.get_secret_value())
            if channel:
                sinks["slack"] = SlackSink(
                    token, channel, config.slack.base_url, config.slack.timeout.total_seconds()
                )
            else:
                log.error(
                    "Slack token is set but no channel: set slack.channel or $%s",
                    config.slack.channel_env,
                )
    if not sinks:
        log.warning("no alert sink configured: violations are recorded and reported, not sent")
    return sinks
