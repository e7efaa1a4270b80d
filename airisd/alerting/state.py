"""The engine's persistent records: alert state, the notification log and history entries.

State machine of one alert (one rule and one label set):

    inactive ──condition holds──▶ pending ──held for `duration`──▶ firing ──condition fails──▶ resolved
        ▲                            │                                                          │
        └──────condition fails───────┘◀─────────────── condition holds again (new pending) ─────┘

"inactive" has no record. A "resolved" record lives until every channel that was told it fired
has been told it resolved.

The notification log says, per (group, channel), which alerts the channel was last told were
firing and when: it is what makes notifications idempotent across restarts (Alertmanager's nflog).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from airisd.timeparse import format_ts

State = Literal["pending", "firing", "resolved"]


class AlertState(msgspec.Struct, kw_only=True):
    group_key: str  # "rule:<rule id>" or "route:<n>:<hash of group labels>"
    fingerprint: str
    rule_id: str = ""  # empty for alerts pushed to /api/v2/alerts
    labels: dict[str, str]
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    group_labels: dict[str, str] = msgspec.field(default_factory=dict)
    state: State
    active_ns: int  # when the condition started to hold (pending since)
    fired_ns: int = 0
    resolved_ns: int = 0
    ends_ns: int = 0  # external alerts: resolve at this time unless re-sent
    value: float | None = None
    generator_url: str = ""
    channels: list[str] = msgspec.field(default_factory=list)  # external alerts: the route's
    silenced_by: list[str] = msgspec.field(default_factory=list)  # at the last evaluation

    @property
    def key(self) -> tuple[str, str]:
        return (self.group_key, self.fingerprint)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id or None,
            "group_key": self.group_key,
            "fingerprint": self.fingerprint,
            "state": self.state,
            "labels": self.labels,
            "annotations": self.annotations,
            "value": self.value,
            "active_at": format_ts(self.active_ns),
            "fired_at": format_ts(self.fired_ns) if self.fired_ns else None,
            "resolved_at": format_ts(self.resolved_ns) if self.resolved_ns else None,
            "generator_url": self.generator_url or None,
            "silenced": bool(self.silenced_by),
            "silenced_by": self.silenced_by,
        }


class NlogEntry(msgspec.Struct, kw_only=True):
    group_key: str
    channel: str
    firing: list[str]  # fingerprints the channel was last told are firing
    ts_ns: int


class HistoryEntry(msgspec.Struct, kw_only=True):
    """One line of ``GET /alerts/history``: a state change or a notification attempt."""

    ts_ns: int
    kind: Literal["firing", "resolved", "notification"]
    group_key: str
    rule_id: str = ""
    rule_name: str = ""
    fingerprint: str = ""  # state changes
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    value: float | None = None
    channel: str = ""  # notifications
    status: str = ""  # notifications: firing or resolved
    alerts: int = 0
    ok: bool = True
    error: str = ""
    attempts: int = 0
    dedup_key: str = ""
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["timestamp"] = format_ts(out.pop("ts_ns"))
        if self.kind != "notification":
            for key in ("channel", "status", "alerts", "ok", "error", "attempts", "dedup_key"):
                out.pop(key)
        else:
            for key in ("fingerprint", "labels", "value"):
                out.pop(key)
        return out
