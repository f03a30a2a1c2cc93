"""`[notifications]` and a project's `notify`: where a build's news goes (`runner.reporting.
notifications`)."""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from runner.core.config_loading import Reading, each, read_table
from runner.core.setting_checks import NOTIFY_KEYS, email_address, http_url, smtp_server_url


@dataclass(frozen=True)
class NotificationSettings:
    """Where a branch going red or green, or a failed deploy, is told (`runner.reporting.
    notifications`); a project's `notify` (the same keys) overrides these key by key. The URLs,
    the secret and the SMTP password are secrets: never shown, never logged."""

    slack_url: Annotated[str | None, http_url] = None  # Slack, Mattermost, Rocket.Chat
    webhook_url: Annotated[str | None, http_url] = None  # a JSON POST, signed with webhook_secret
    webhook_secret: str | None = None
    email_to: Annotated[tuple[str, ...], each(email_address)] = ()
    email_from: Annotated[str | None, email_address] = None
    # smtp://USER:PASSWORD@HOST:PORT (STARTTLS when offered), smtps:// for TLS from the start.
    smtp_url: Annotated[str | None, smtp_server_url] = None

    def __repr__(self) -> str:
        configured = [key for key in NOTIFY_KEYS if getattr(self, key)]
        return f"NotificationSettings(configured={configured!r})"

    def overridden(self, notify: "NotificationSettings") -> "NotificationSettings":
        """These settings with the keys a project's `notify` sets instead. A project's own
        webhook_url goes with its own webhook_secret (or none): another team's receiver never
        gets messages signed with this one's secret; its own smtp_url, with its own sender."""
        changes = {key: getattr(notify, key) for key in NOTIFY_KEYS if getattr(notify, key)}
        if "webhook_url" in changes:
            changes.setdefault("webhook_secret", None)
        if "smtp_url" in changes:
            changes.setdefault("email_from", None)
        return dataclasses.replace(self, **changes)

    def secrets(self) -> list[str]:
        """What a build's output must never show of these settings."""
        password = urlsplit(self.smtp_url).password if self.smtp_url else None
        found = (self.slack_url, self.webhook_url, self.webhook_secret, self.smtp_url, password)
        return [value for value in found if value]


def notification_settings(stored: Mapping[str, Any]) -> NotificationSettings:
    """A registration's `notify` as stored (checked when it was set): its known keys."""
    values = {key: stored[key] for key in NOTIFY_KEYS if stored.get(key)}
    if "email_to" in values:
        values["email_to"] = tuple(values["email_to"])
    return NotificationSettings(**values)


def checked_notify(wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A `notify` given through the API, read as the config file's is (the same checks; a
    ConfigError names every problem); the values to store."""
    given = {key: value for key, value in wanted.items() if value is not None}
    reading = Reading(base_dir=Path("."), environ={})
    values = read_table(NotificationSettings, given, "notify", reading)
    reading.raise_problems(None)
    return {
        key: list(v) if isinstance(v, tuple) else v for key, v in values.items() if key in given
    }
