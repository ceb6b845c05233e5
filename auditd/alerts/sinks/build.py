"""Build the configured sinks."""

from __future__ import annotations

import logging

from auditd.alerts.sinks.base import Sink
from auditd.alerts.sinks.console import ConsoleSink, LogSink
from auditd.alerts.sinks.http import AlertmanagerSink, WebhookSink
from auditd.alerts.sinks.slack import SlackSink, SlackWebhookSink
from auditd.config import Config
from auditd.logs import register_secret

log = logging.getLogger(__name__)


def build_sinks(config: Config, console: bool = False, dry_run: bool = False) -> dict[str, Sink]:
    if dry_run:
        # Every notification is decided, recorded and logged; nothing leaves the process.
        return {"log": LogSink()}
    sinks: dict[str, Sink] = {}
    if config.alerts.console or console:
        sinks["console"] = ConsoleSink()
    if config.alerts.webhook is not None:
        register_secret(config.alerts.webhook.url.get_secret_value())
        sinks["webhook"] = WebhookSink(
            config.alerts.webhook.url, config.alerts.webhook.timeout.total_seconds()
        )
    if config.alerts.alertmanager is not None:
        am = config.alerts.alertmanager
        register_secret(am.url.get_secret_value())
        sinks["alertmanager"] = AlertmanagerSink(am.url, am.timeout.total_seconds())
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
        else:
            webhook = config.slack.webhook()
            if webhook is not None:
                register_secret(webhook.get_secret_value())
                sinks["slack"] = SlackWebhookSink(webhook, config.slack.timeout.total_seconds())
    if not sinks:
        log.warning("no alert sink configured: violations are recorded and reported, not sent")
    return sinks
