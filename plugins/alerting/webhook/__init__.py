"""Generic webhook: a JSON POST in Alertmanager's webhook format (version 4), so receivers written
for Alertmanager (PagerDuty bridges, ticketing hooks, chat bots) work unchanged."""

from __future__ import annotations

from typing import Any, ClassVar

from airisd.alerting.httpchannel import HttpChannel, check_headers, check_url
from airisd.alerting.notification import AlertInfo, Notification
from airisd.alerting.rules import invalid_option
from airisd.hookspecs import hookimpl
from airisd.plugin import Plugin, PluginConfig, PluginContext
from airisd.timeparse import format_ts

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


class Config(PluginConfig):
    url: str = ""
    headers: dict[str, str] = {}
    max_alerts: int = 0  # 0: all; otherwise the rest are dropped and counted in truncatedAlerts
    timeout_secs: float = 10.0
    send_resolved: bool = True

    def validate(self) -> None:
        check_url("url", self.url)
        check_headers(self.headers)
        if self.max_alerts < 0:
            raise invalid_option("max_alerts", "must be 0 (all) or positive")
        if self.timeout_secs <= 0:
            raise invalid_option("timeout_secs", "must be positive")


def alertmanager_payload(n: Notification, *, max_alerts: int = 0) -> dict[str, Any]:
    alerts = n.alerts[:max_alerts] if max_alerts else n.alerts
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": len(n.alerts) - len(alerts),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "alerts": [_alert(a) for a in alerts],
    }


def _alert(a: AlertInfo) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": format_ts(a.starts_ns),
        "endsAt": format_ts(a.ends_ns) if a.ends_ns else ZERO_TIME,
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
    }


class WebhookChannel(HttpChannel):
    name: ClassVar[str] = "webhook"
    Config: ClassVar[type[PluginConfig]] = Config
    description: ClassVar[str] = "POST alert notifications as JSON in Alertmanager's webhook format"

    def __init__(self, config: PluginConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, Config)
        self.cfg = config
        self.timeout_secs = config.timeout_secs

    async def send(self, notification: Notification) -> None:
        body = alertmanager_payload(notification, max_alerts=self.cfg.max_alerts)
        await self.request("POST", self.cfg.url, json=body, headers=dict(self.cfg.headers))


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [WebhookChannel]


plugin_class = WebhookChannel
