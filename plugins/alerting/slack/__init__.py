"""Slack notifications through an incoming webhook (also understood by Mattermost and Rocket.Chat).

One message per notification: ``text`` is the title, and each alert is an attachment coloured by
its state (red critical/error, orange warning, blue info, green resolved).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airisd.alerting.httpchannel import HttpChannel, check_url
from airisd.alerting.notification import Notification
from airisd.alerting.render import render_bodies, render_title
from airisd.alerting.rules import invalid_option
from airisd.alerting.templates import compile_template
from airisd.hookspecs import hookimpl
from airisd.plugin import Plugin, PluginConfig, PluginContext

DEFAULT_TITLE = "[{{.Status | upper}}] {{.RuleName}} - {{.Severity}}"
DEFAULT_TEXT = "{{.Description}}\nValue: {{.Value}}\nTime: {{.Timestamp}}\nLabels: {{.Labels}}"
COLORS = {"critical": "#d00000", "error": "#d00000", "warning": "#f2a100", "info": "#2f80ed"}
RESOLVED_COLOR = "#2eb67d"
MAX_ATTACHMENTS = 50


class Config(PluginConfig):
    webhook_url: str = ""  # usually from [alerting.channel_defaults.slack] (SLACK_WEBHOOK_URL)
    channel: str = ""  # e.g. "#alerts"; empty: the webhook's own channel
    username: str = ""
    icon_emoji: str = ""
    title_template: str = DEFAULT_TITLE
    text_template: str = DEFAULT_TEXT
    timeout_secs: float = 10.0
    send_resolved: bool = True

    def validate(self) -> None:
        check_url("webhook_url", self.webhook_url)
        if self.timeout_secs <= 0:
            raise invalid_option("timeout_secs", "must be positive")
        if self.icon_emoji and not (self.icon_emoji.startswith(":") and self.icon_emoji.endswith(":")):
            raise invalid_option("icon_emoji", f"{self.icon_emoji[:40]!r} is not an emoji code (:warning:)")
        compile_template(self.title_template, field="config.title_template")
        compile_template(self.text_template, field="config.text_template")


class SlackChannel(HttpChannel):
    name: ClassVar[str] = "slack"
    Config: ClassVar[type[PluginConfig]] = Config
    description: ClassVar[str] = "Post alert notifications to a Slack incoming webhook"

    def __init__(self, config: PluginConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, Config)
        self.cfg = config
        self.timeout_secs = config.timeout_secs
        self.title = compile_template(config.title_template, field="config.title_template")
        self.text = compile_template(config.text_template, field="config.text_template")

    def payload(self, n: Notification) -> dict[str, Any]:
        bodies = render_bodies(self.text, n)
        attachments = []
        for alert, text in list(zip(n.alerts, bodies, strict=False))[:MAX_ATTACHMENTS]:
            severity = alert.labels.get("severity", n.rule.severity)
            color = RESOLVED_COLOR if alert.status == "resolved" else COLORS.get(severity, COLORS["warning"])
            attachments.append(
                {"color": color, "text": text, "ts": (alert.ends_ns or alert.starts_ns) // 1_000_000_000}
            )
        if len(n.alerts) > MAX_ATTACHMENTS:
            attachments.append({"text": f"... and {len(n.alerts) - MAX_ATTACHMENTS} more alerts"})
        body: dict[str, Any] = {"text": render_title(self.title, n), "attachments": attachments}
        for key in ("channel", "username", "icon_emoji"):
            if value := getattr(self.cfg, key):
                body[key] = value
        return body

    async def send(self, notification: Notification) -> None:
        await self.request("POST", self.cfg.webhook_url, json=self.payload(notification))


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [SlackChannel]


plugin_class = SlackChannel
