"""What a channel plugin receives: one notification carrying the alerts of one group.

A group is one rule's alerts (or, for alerts pushed to ``/api/v2/alerts``, one route's alerts with
the same ``group_by`` labels). Channels render ``Notification.context(alert)`` with their templates:
subject-like templates once per notification against the first alert (``.AlertCount`` says how many
there are), body-like templates once per alert.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from airisd.timeparse import format_ts

Status = Literal["firing", "resolved"]


class AlertInfo(msgspec.Struct, kw_only=True):
    """One alert inside a notification."""

    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    starts_ns: int
    ends_ns: int = 0  # 0 while firing
    value: float | None = None
    generator_url: str = ""


class RuleInfo(msgspec.Struct, kw_only=True):
    """The rule that produced the alerts, as templates see it (empty fields for external alerts)."""

    id: str = ""
    name: str = ""
    description: str = ""
    severity: str = ""
    metric: str = ""
    operator: str = ""
    threshold: float | None = None
    aggregation: str = ""
    count: int | None = None
    query: str = ""
    duration: str = ""


class Notification(msgspec.Struct, kw_only=True):
    group_key: str
    status: Status  # firing if any alert fires, else resolved
    receiver: str  # the channel's name
    rule: RuleInfo
    alerts: list[AlertInfo]
    group_labels: dict[str, str] = msgspec.field(default_factory=dict)
    external_url: str = ""
    ts_ns: int = 0  # when the notification was built

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def firing(self) -> list[AlertInfo]:
        return [a for a in self.alerts if a.status == "firing"]

    def resolved(self) -> list[AlertInfo]:
        return [a for a in self.alerts if a.status == "resolved"]

    def context(self, alert: AlertInfo | None = None) -> dict[str, Any]:
        """The template variables (templates.VARIABLES) for ``alert``, default the first one."""
        if alert is None:
            alert = self.alerts[0] if self.alerts else None
        rule = self.rule
        ctx: dict[str, Any] = {
            "RuleName": rule.name,
            "RuleID": rule.id,
            "Severity": rule.severity,
            "Description": rule.description,
            "Status": self.status,
            "Metric": rule.metric,
            "Operator": rule.operator,
            "Threshold": rule.threshold if rule.threshold is not None else rule.count,
            "Count": rule.count,
            "Query": rule.query,
            "Duration": rule.duration,
            "Aggregation": rule.aggregation,
            "AlertCount": len(self.alerts),
            "Receiver": self.receiver,
            "ExternalURL": self.external_url,
            "GroupLabels": self.group_labels,
            "CommonLabels": self.common_labels,
            "Timestamp": format_ts(self.ts_ns) if self.ts_ns else "",
        }
        if alert is not None:
            labels, annotations = alert.labels, alert.annotations
            ctx.update(
                Status=alert.status,
                Labels=labels,
                Annotations=annotations,
                Value=alert.value,
                Fingerprint=alert.fingerprint,
                GeneratorURL=alert.generator_url,
                StartsAt=format_ts(alert.starts_ns) if alert.starts_ns else "",
                EndsAt=format_ts(alert.ends_ns) if alert.ends_ns else "",
            )
            event_ns = alert.ends_ns if alert.status == "resolved" and alert.ends_ns else alert.starts_ns
            if event_ns:
                ctx["Timestamp"] = format_ts(event_ns)
            if not rule.name:
                ctx["RuleName"] = labels.get("alertname", "")
            if not rule.severity:
                ctx["Severity"] = labels.get("severity", "")
            if not rule.description:
                ctx["Description"] = annotations.get("description") or annotations.get("summary", "")
            if alert.value is None and "value" in annotations:
                ctx["Value"] = annotations["value"]
        return ctx


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit hash of a label set (the alert's identity)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(labels[k].encode())
        h.update(b"\xfe")
    return h.hexdigest()


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for m in maps[1:]:
        for k in list(common):
            if m.get(k) != common[k]:
                del common[k]
    return common
