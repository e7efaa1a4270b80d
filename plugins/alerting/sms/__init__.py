"""SMS through an HTTP gateway (Twilio, Vonage, Naver SENS, a carrier's own API, ...).

Gateways differ, so the request is a template: ``url`` and ``body_template`` are rendered once per
recipient with the alert's variables plus ``{{.To}}`` (the phone number) and ``{{.Message}}`` (the
rendered ``message_template``). Use ``| json`` inside JSON bodies and ``| urlquery`` inside URLs
and form bodies, so that quotes and ampersands in alert text cannot break the request.

A retried notification skips the recipients that already got it, so nobody is texted twice.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import ClassVar, Literal

from airisd.alerting.httpchannel import HttpChannel, check_headers, check_url
from airisd.alerting.notification import Notification
from airisd.alerting.render import render_title
from airisd.alerting.rules import invalid_option
from airisd.alerting.templates import compile_template
from airisd.hookspecs import hookimpl
from airisd.plugin import Plugin, PluginConfig, PluginContext

DEFAULT_MESSAGE = "[{{.Status | upper}}] {{.RuleName}} ({{.Severity}}): {{.Description}}"
DEFAULT_BODY = '{"to": {{.To | json}}, "message": {{.Message | json}}}'
_PHONE = re.compile(r"\+?[0-9][0-9 ().\-]{2,31}")
_REMEMBERED = 1024  # (notification, recipient) pairs remembered to skip on retry


class Config(PluginConfig):
    url: str = ""  # may use templates, e.g. https://gw/send?to={{.To | urlquery}}
    method: Literal["POST", "GET"] = "POST"
    headers: dict[str, str] = {}
    content_type: str = "application/json"
    recipients: list[str] = []
    message_template: str = DEFAULT_MESSAGE
    body_template: str = DEFAULT_BODY  # POST only
    max_message_chars: int = 0  # 0: no limit; else the message is cut and ends with "..."
    timeout_secs: float = 10.0
    send_resolved: bool = True

    def validate(self) -> None:
        check_url("url", self.url)
        check_headers(self.headers)
        if not self.recipients:
            raise invalid_option("recipients", "at least one phone number is required")
        for i, number in enumerate(self.recipients):
            if not _PHONE.fullmatch(number):
                raise invalid_option(f"recipients[{i}]", f"{number[:40]!r} is not a phone number")
        if self.max_message_chars < 0 or 0 < self.max_message_chars < 10:
            raise invalid_option("max_message_chars", "must be 0 (no limit) or at least 10")
        if self.timeout_secs <= 0:
            raise invalid_option("timeout_secs", "must be positive")
        compile_template(self.url, field="config.url")
        compile_template(self.message_template, field="config.message_template")
        compile_template(self.body_template, field="config.body_template")


class SmsChannel(HttpChannel):
    name: ClassVar[str] = "sms"
    Config: ClassVar[type[PluginConfig]] = Config
    description: ClassVar[str] = "Send alert notifications as SMS through an HTTP gateway"

    def __init__(self, config: PluginConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, Config)
        self.cfg = config
        self.timeout_secs = config.timeout_secs
        self.url = compile_template(config.url, field="config.url")
        self.message = compile_template(config.message_template, field="config.message_template")
        self.body = compile_template(config.body_template, field="config.body_template")
        self._delivered: OrderedDict[tuple[str, int, str, str], None] = OrderedDict()

    def render_message(self, n: Notification) -> str:
        text = render_title(self.message, n)
        limit = self.cfg.max_message_chars
        if limit and len(text) > limit:
            text = text[: limit - 3] + "..."
        return text

    async def send(self, notification: Notification) -> None:
        cfg = self.cfg
        ctx = notification.context()
        ctx["Message"] = self.render_message(notification)
        headers = dict(cfg.headers)
        if cfg.method == "POST" and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = cfg.content_type
        for number in cfg.recipients:
            key = (notification.group_key, notification.ts_ns, notification.status, number)
            if key in self._delivered:
                continue
            ctx["To"] = number
            url = self.url.render(ctx)
            if cfg.method == "GET":
                await self.request("GET", url, headers=headers)
            else:
                await self.request("POST", url, content=self.body.render(ctx).encode(), headers=headers)
            self._delivered[key] = None
            while len(self._delivered) > _REMEMBERED:
                self._delivered.popitem(last=False)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [SmsChannel]


plugin_class = SmsChannel
