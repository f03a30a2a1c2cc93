"""What a notification says, pure: a Slack-compatible message (Slack, Mattermost, Rocket.Chat
read the same `{"text": ...}`) and the generic webhook's JSON, from plain facts of the build."""

import hashlib
import hmac
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from runner.core.names import short_sha
from runner.core.statuses import format_duration

TAIL_LINES = 20
NOTE_PREFIX = "[hobotnica] "
HEADLINES = {"failed": "failed", "fixed": "passes again", "deploy failed": "failed"}


@dataclass(frozen=True)
class BuildNews:
    """The facts a notification names; every text is masked already."""

    kind: str  # "failed", "fixed", "deploy failed"
    build_id: int
    build_url: str
    repository: str
    branch: str
    job: str
    sha: str
    commit_url: str | None
    title: str
    author: str
    state: str
    description: str
    duration_s: float | None
    log_tail: str

    @property
    def headline(self) -> str:
        """`octo/app main: make test failed`."""
        verb = HEADLINES.get(self.kind, self.kind)
        return f"{self.repository} {self.branch}: make {self.job} {verb}"

    @property
    def last_lines(self) -> list[str]:
        """The build's own last lines (not Hobotnica's `[hobotnica] …` notes)."""
        lines = [line for line in self.log_tail.split("\n") if line.strip()]
        return [line for line in lines if not line.startswith(NOTE_PREFIX)][-TAIL_LINES:]


def slack_message(news: BuildNews) -> dict[str, Any]:
    commit = _slack_escape(short_sha(news.sha))
    if news.commit_url:
        commit = f"<{news.commit_url}|{commit}>"
    took = f" · took {format_duration(news.duration_s)}" if news.duration_s is not None else ""
    lines = [
        f"*{_slack_escape(news.headline)}* · <{news.build_url}|build #{news.build_id}>",
        f"{commit} {_slack_escape(news.title)} — {_slack_escape(news.author)}",
        f"{_slack_escape(news.description)}{took}",
    ]
    if news.last_lines and news.kind != "fixed":
        tail = "\n".join(news.last_lines).replace("```", "'''")
        lines.append(f"```{_slack_escape(tail)}```")
    return {"text": "\n".join(lines)}


def webhook_body(news: BuildNews, notification_id: int) -> dict[str, Any]:
    return {
        "event": news.kind,
        "notification_id": notification_id,
        "headline": news.headline,
        "repository": news.repository,
        "branch": news.branch,
        "job": news.job,
        "sha": news.sha,
        "commit_url": news.commit_url,
        "title": news.title,
        "author": news.author,
        "state": news.state,
        "description": news.description,
        "duration_s": news.duration_s,
        "build_id": news.build_id,
        "build_url": news.build_url,
        "log_tail": news.last_lines,
    }


def email_message(
    news: BuildNews, sender: str, recipients: tuple[str, ...], delivery: str
) -> EmailMessage:
    """A plain-text mail: the headline as its subject, the facts, the build's last lines."""
    message = EmailMessage()
    message["Subject"] = f"[Hobotnica] {news.headline}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["X-Hobotnica-Delivery"] = delivery
    took = f" (took {format_duration(news.duration_s)})" if news.duration_s is not None else ""
    lines = [
        news.headline,
        "",
        f"Build:  {news.build_url}",
        f"Commit: {news.commit_url or news.sha} {news.title}",
        f"Author: {news.author}",
        f"Result: {news.description}{took}",
    ]
    if news.last_lines and news.kind != "fixed":
        lines += ["", "The build's last lines:", "", *(f"    {line}" for line in news.last_lines)]
    message.set_content("\n".join(lines) + "\n")
    return message


def signature(secret: str, body: bytes) -> str:
    """`X-Hobotnica-Signature-256`, as GitHub signs its webhooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _slack_escape(text: str) -> str:
    """A build's text must not become a link or a mention: Slack's three control characters,
    and for Mattermost and Rocket.Chat a plain `@channel` and a Markdown `[text](url)` (a word
    joiner after `@` and before `(` leaves them as text)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("@", "@\u2060").replace("](", "]\u2060(")
