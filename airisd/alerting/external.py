"""Alerts pushed by Prometheus, Loki or vmalert rulers to ``POST /api/v2/alerts``.

The body is Alertmanager's v2 ``postableAlerts``: a list of ``{labels, annotations, startsAt,
endsAt, generatorURL}``. As in Alertmanager, a missing startsAt means now, a missing endsAt means
now + ``resolve_timeout_secs`` (rulers re-send firing alerts well within it), and an endsAt in the
past resolves the alert. One bad alert rejects the whole request, naming ``[i].field``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from airisd.alerting.config import AlertingConfig, RouteConfig
from airisd.alerting.notification import fingerprint
from airisd.errors import ValidationError
from airisd.timeparse import parse_timestamp

MAX_ALERTS_PER_REQUEST = 10_000
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ZERO_TIMES = ("", "0001-01-01T00:00:00Z")


class ExternalAlert(msgspec.Struct, kw_only=True):
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_ns: int
    ends_ns: int
    generator_url: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


def parse_external_alerts(body: Any, *, now_ns: int, resolve_timeout_ns: int) -> list[ExternalAlert]:
    if not isinstance(body, list):
        raise _err("", "expected a JSON array of alerts")
    if len(body) > MAX_ALERTS_PER_REQUEST:
        raise _err("", f"at most {MAX_ALERTS_PER_REQUEST} alerts per request")
    return [_alert(item, f"[{i}]", now_ns, resolve_timeout_ns) for i, item in enumerate(body)]


def _alert(item: Any, at: str, now_ns: int, resolve_timeout_ns: int) -> ExternalAlert:
    if not isinstance(item, dict):
        raise _err(at, "expected an object")
    unknown = set(item) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    if unknown:
        raise _err(f"{at}.{sorted(unknown)[0]}", "unknown field")
    labels = _string_map(item.get("labels"), f"{at}.labels", names=True)
    if not labels:
        raise _err(f"{at}.labels", "at least one label is required")
    annotations = _string_map(item.get("annotations", {}), f"{at}.annotations", names=False)
    starts = _time(item.get("startsAt"), f"{at}.startsAt")
    ends = _time(item.get("endsAt"), f"{at}.endsAt")
    if starts and ends and ends < starts:
        raise _err(f"{at}.endsAt", "is before startsAt")
    url = item.get("generatorURL", "")
    if not isinstance(url, str):
        raise _err(f"{at}.generatorURL", "expected a string")
    starts = starts or now_ns
    return ExternalAlert(
        labels=labels,
        annotations=annotations,
        starts_ns=starts,
        ends_ns=ends or max(now_ns, starts) + resolve_timeout_ns,
        generator_url=url,
    )


def _string_map(value: Any, field: str, *, names: bool) -> dict[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _err(field, "expected an object of strings")
    for k, v in value.items():
        if not isinstance(v, str):
            raise _err(f"{field}.{k}"[:200], "expected a string value")
        if names and not _LABEL.fullmatch(k):
            raise _err(f"{field}.{k}"[:200], f"{k[:60]!r} is not a valid label name")
    return dict(value)


def _time(value: Any, field: str) -> int:
    if value is None or value in _ZERO_TIMES:
        return 0
    if not isinstance(value, str):
        raise _err(field, "expected an RFC 3339 timestamp string")
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _err(field, str(exc)) from None


def route_alert(config: AlertingConfig, labels: dict[str, str]) -> list[tuple[str, RouteConfig]]:
    """The routes an alert goes to, as (route id, route); the default route when none matches."""
    out: list[tuple[str, RouteConfig]] = []
    for i, route in enumerate(config.routes):
        if route.matches(labels):
            out.append((str(i), route))
            if not route.continue_:
                break
    if not out:
        out.append(("default", RouteConfig(channels=list(config.default_channels))))
    return out


def group_of(route_id: str, route: RouteConfig, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    group_labels = {k: labels.get(k, "") for k in route.group_by}
    return f"route:{route_id}:{fingerprint(group_labels)}", group_labels


def _err(field: str, problem: str) -> ValidationError:
    return ValidationError(f"{field}: {problem}" if field else problem, details={"field": field or "body"})
