"""Slack through slack-sdk's WebClient (bot token, chat.postMessage)."""

from __future__ import annotations

import logging

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from auditd.alerts.message import Message, Words
from auditd.alerts.render_group import words
from auditd.alerts.sinks.base import Refresher, SendResult
from auditd.retry_after import retry_after as read_retry_after

# Errors that no retry can fix; retrying them would only hammer Slack.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "invalid_blocks",
        "invalid_arguments",
        "msg_too_long",
    }
)


log = logging.getLogger(__name__)

METADATA_TYPE = "auditd_notification"


class SlackSink:
    name = "slack"
    grouped = True
    refresher: Refresher | None = None

    def __init__(
        self,
        token: SecretStr,
        channel: str,
        base_url: str = "https://slack.com/api/",
        timeout: float = 10,
    ) -> None:
        # WebClient keeps the token in its headers only; nothing here formats it into a string.
        self._client = WebClient(
            token=token.get_secret_value(), base_url=base_url, timeout=int(timeout)
        )
        self.channel = channel

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        """Look for our message metadata where it would be: the channel's recent history for an
        incident's first message, its thread for a reply (Slack's history has no replies)."""
        try:
            if parent is None:
                resp = self._client.conversations_history(
                    channel=self.channel, limit=200, include_all_metadata=True
                )
            else:
                resp = self._client.conversations_replies(
                    channel=self.channel, ts=parent, limit=200, include_all_metadata=True
                )
        except (SlackApiError, OSError, ValueError):
            return None
        for msg in resp.get("messages") or []:
            meta = msg.get("metadata") or {}
            if (
                meta.get("event_type") == METADATA_TYPE
                and (meta.get("event_payload") or {}).get("key") == key
            ):
                return str(msg.get("ts") or "") or None
        return None

    def completed(self, message: Message, parent: str | None) -> None:
        view = words(message).parent
        if parent is not None and view is not None:
            self._update_parent(parent, view)

    def _update_parent(self, parent: str, view: Words) -> None:
        """The parent shows the incident's current state, edited in place. Best effort: the
        reply is already posted, and failing here would make the outbox post it again."""
        try:
            self._client.chat_update(
                channel=self.channel, ts=parent, text=view.text, blocks=view.blocks
            )
        except (SlackApiError, OSError, ValueError) as e:
            log.warning("could not update the incident's parent message: %s", type(e).__name__)

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        said = words(message)
        try:
            resp = self._client.chat_postMessage(
                channel=self.channel,
                text=said.text,
                blocks=said.blocks,
                # An update to an incident is a reply in its thread.
                thread_ts=parent,
                # Lets find_sent recognise this message after a crash (no double post).
                metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key}},
            )
            if parent is not None and said.parent is not None:
                self._update_parent(parent, said.parent)
        except SlackApiError as e:
            error = str(e.response.get("error") or f"http_{e.response.status_code}")
            retry_after = (
                read_retry_after(e.response.headers, 1.0) if e.response.status_code == 429 else None
            )
            return SendResult(
                ok=False,
                error=f"slack: {error}",
                permanent=error in PERMANENT_ERRORS,
                retry_after=retry_after,
            )
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, bad JSON
            return SendResult(ok=False, error=f"slack unreachable: {type(e).__name__}")
        return SendResult(ok=True, external_id=str(resp.get("ts") or "") or None)


class SlackWebhookSink:
    """Slack through an incoming webhook (slack-sdk WebhookClient): for teams without a bot
    token. The webhook decides the channel; there are no threads, updates or history."""

    name = "slack"
    grouped = True
    refresher: Refresher | None = None

    def __init__(self, url: SecretStr, timeout: float = 10) -> None:
        self._client = WebhookClient(url.get_secret_value(), timeout=int(timeout))

    def completed(self, message: Message, parent: str | None) -> None:
        pass

    def find_sent(self, key: str, parent: str | None = None) -> str | None:
        return None  # a webhook cannot look back: a crash mid-send may post twice

    def send(self, message: Message, key: str, parent: str | None = None) -> SendResult:
        said = words(message)
        try:
            resp = self._client.send(text=said.text, blocks=said.blocks)
        except (OSError, ValueError) as e:
            return SendResult(ok=False, error=f"slack webhook unreachable: {type(e).__name__}")
        if resp.status_code == 200:
            return SendResult(ok=True)
        body = str(resp.body or "")[:60]
        retry_after = read_retry_after(resp.headers, 1.0) if resp.status_code == 429 else None
        transient = resp.status_code == 429 or resp.status_code >= 500
        return SendResult(
            ok=False,
            error=f"slack webhook: HTTP {resp.status_code} {body}".strip(),
            permanent=not transient,
            retry_after=retry_after,
        )
