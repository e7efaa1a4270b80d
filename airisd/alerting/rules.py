"""Rules, channels and silences: their typed models and the validation of what users post.

Every ``*_from_json`` function takes decoded JSON (dicts, lists, scalars) and either returns a typed
model or raises ValidationError whose message starts with the dotted field (``conditions.operator``)
and whose ``details["field"]`` names it. Read-only keys of our own output (``id``, ``created_at``,
``updated_at``, ``state``, ...) are accepted and ignored, so a GET body can be PUT back.

Rule shapes (the seed's section 4):

    metric: {"metric", "operator": gt|gte|lt|lte|eq|ne, "threshold", "duration": "5m",
             "aggregation": avg|min|max|sum|count|last (avg), "labels": {filter},
             "window": "1m" (the span each evaluation aggregates over), "group_by": [label names]}
    log:    {"log_query", "count", "duration"}   fires when >= count records match in `duration`

The condition kind is ``conditions.type`` when given, else "log" if ``log_query`` is present, else
"metric".
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from airisd.errors import ValidationError
from airisd.plugin import AlertChannel, PluginConfig
from airisd.timeparse import format_ts, parse_duration, parse_timestamp

OPERATORS = ("gt", "gte", "lt", "lte", "eq", "ne")
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last")
SEVERITIES = ("info", "warning", "error", "critical")
# Keys of our own output that a client may send back (a GET body PUT back): ignored.
READ_ONLY = frozenset(
    {"id", "created_at", "updated_at", "state", "active_alerts", "last_evaluation", "active"}
)
DEFAULT_WINDOW = "1m"
MASK = "***"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
_ALLOWED = {"operator": OPERATORS, "aggregation": AGGREGATIONS, "severity": SEVERITIES}
_SECRET_KEY = re.compile(r"pass|secret|token|api_?key|auth|credential|cookie|webhook_url", re.I)

Operator = Literal["gt", "gte", "lt", "lte", "eq", "ne"]
Aggregation = Literal["avg", "min", "max", "sum", "count", "last"]
Severity = Literal["info", "warning", "error", "critical"]


class MetricCondition(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="metric"
):
    metric: str
    operator: Operator
    threshold: float
    duration: str = "0s"  # how long the condition must hold before the alert fires
    aggregation: Aggregation = "avg"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    window: str = DEFAULT_WINDOW
    group_by: list[str] = msgspec.field(default_factory=list)

    def holds(self, value: float) -> bool:
        return compare(value, self.operator, self.threshold)


class LogCondition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="log"):
    log_query: str
    count: int
    duration: str  # the window the matches are counted in


Condition = MetricCondition | LogCondition


class Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    conditions: Condition
    description: str = ""
    severity: Severity = "warning"
    channels: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    id: str = ""
    created_ns: int = 0
    updated_ns: int = 0

    @property
    def duration_ns(self) -> int:
        return parse_duration(self.conditions.duration)

    def to_json(self) -> dict[str, Any]:
        out = _public(self)
        out["conditions"] = msgspec.to_builtins(self.conditions)
        return out


class Channel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A configured notification target. ``config`` is kept as posted (secrets included): the
    plugin's Config, with the daemon's per-type defaults under it, is built from it on use."""

    name: str
    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    enabled: bool = True
    description: str = ""
    id: str = ""
    created_ns: int = 0
    updated_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        """The full record, secrets included: for storage and internal use only."""
        return _public(self)

    def redacted(self) -> dict[str, Any]:
        """The record for output: passwords, tokens, webhook URLs and auth headers masked."""
        out = _public(self)
        out["config"] = redact_config(self.config)
        return out


class Matcher(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        # re caches compiled patterns; silence_from_json compiled this one already.
        hit = bool(re.fullmatch(self.value, actual)) if self.is_regex else actual == self.value
        return hit == self.is_equal


class Silence(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Suppresses notifications (never state) of alerts it matches between starts and ends."""

    starts_ns: int
    ends_ns: int
    rule_id: str = ""
    matchers: list[Matcher] = msgspec.field(default_factory=list)
    comment: str = ""
    created_by: str = ""
    id: str = ""
    created_ns: int = 0

    def active(self, now_ns: int) -> bool:
        return self.starts_ns <= now_ns < self.ends_ns

    def matches(self, rule_id: str, labels: Mapping[str, str]) -> bool:
        if self.rule_id and self.rule_id != rule_id:
            return False
        return all(m.matches(labels) for m in self.matchers)

    def to_json(self) -> dict[str, Any]:
        out = _public(self)
        out["starts_at"] = out.pop("starts_ns")
        out["ends_at"] = out.pop("ends_ns")
        for key in ("starts_at", "ends_at"):
            out[key] = format_ts(out[key])
        return out


# -- comparison ---------------------------------------------------------------------------------


def compare(value: float, operator: str, threshold: float) -> bool:
    if operator == "gt":
        return value > threshold
    if operator == "gte":
        return value >= threshold
    if operator == "lt":
        return value < threshold
    if operator == "lte":
        return value <= threshold
    if operator == "eq":
        return value == threshold
    if operator == "ne":
        return value != threshold
    raise ValueError(f"unknown operator {operator!r}")


# -- rules --------------------------------------------------------------------------------------


def rule_from_json(obj: Any, *, channel_names: Collection[str] | None = None) -> Rule:
    """Validate a posted rule. With ``channel_names``, every named channel must be among them."""
    body = _object(obj, "")
    body = {k: v for k, v in body.items() if k not in READ_ONLY}
    for key in ("created_ns", "updated_ns"):
        if key in body:
            raise _err(key, f"unknown field `{key}`")
    cond = _object(body.get("conditions"), "conditions")
    kind = cond.get("type") or ("log" if "log_query" in cond else "metric")
    ctype: type[MetricCondition] | type[LogCondition] = LogCondition if kind == "log" else MetricCondition
    body["conditions"] = {**cond, "type": kind}
    if kind not in ("metric", "log"):
        raise _err("conditions.type", f"must be metric or log, got {kind!r}")
    body["conditions"] = _convert(body["conditions"], ctype, "conditions")
    rule = _convert(body, Rule, "")
    _check_name(rule.name, "name", strict=False)
    for i, ch in enumerate(rule.channels):
        _check_name(ch, f"channels[{i}]")
        if channel_names is not None and ch not in channel_names:
            raise _err(f"channels[{i}]", f"no channel named {ch!r} (create it with POST /channels first)")
    _check_labels(rule.labels, "labels")
    if isinstance(rule.conditions, MetricCondition):
        _check_metric(rule.conditions)
    else:
        _check_log(rule.conditions)
    return rule


def _check_metric(c: MetricCondition) -> None:
    if not c.metric.strip():
        raise _err("conditions.metric", "must not be empty")
    if not math.isfinite(c.threshold):
        raise _err("conditions.threshold", "must be a finite number")
    _duration(c.duration, "conditions.duration")
    if _duration(c.window, "conditions.window") <= 0:
        raise _err("conditions.window", "must be positive")
    _check_labels(c.labels, "conditions.labels")
    for i, name in enumerate(c.group_by):
        if not _LABEL.fullmatch(name):
            raise _err(f"conditions.group_by[{i}]", f"{name!r} is not a label name")


def _check_log(c: LogCondition) -> None:
    if not c.log_query.strip():
        raise _err("conditions.log_query", "must not be empty")
    if c.count < 1:
        raise _err("conditions.count", f"must be at least 1, got {c.count}")
    if _duration(c.duration, "conditions.duration") <= 0:
        raise _err("conditions.duration", "must be positive: it is the window matches are counted in")
    from airisd import logquery  # the log role's parser; imported late: only log rules need it

    try:
        logquery.parse(c.log_query, field="conditions.log_query")
    except ValidationError as exc:
        details = {**exc.details, "field": "conditions.log_query"}
        raise ValidationError(f"conditions.log_query: {exc.message}", details=details) from None


def _duration(text: str, field: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _err(field, str(exc)) from None


# -- channels -----------------------------------------------------------------------------------


ChannelRegistry = Mapping[str, type[AlertChannel]]


def channel_from_json(
    obj: Any, registry: ChannelRegistry, *, defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> Channel:
    """Validate a posted channel: its ``config`` must satisfy the plugin's Config (over the
    daemon's per-type ``defaults``), its validate() and its templates."""
    body = {k: v for k, v in _object(obj, "").items() if k not in READ_ONLY}
    for key in ("created_ns", "updated_ns"):
        if key in body:
            raise _err(key, f"unknown field `{key}`")
    channel = _convert(body, Channel, "")
    _check_name(channel.name, "name")
    channel_config(channel, registry, defaults=defaults)
    return channel


def channel_config(
    channel: Channel, registry: ChannelRegistry, *, defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> PluginConfig:
    """Build and validate the plugin Config of ``channel``; errors name ``config.<option>``."""
    cls = registry.get(channel.type)
    if cls is None:
        known = ", ".join(sorted(registry)) or "none"
        raise _err("type", f"unknown channel type {channel.type!r} (installed: {known})")
    merged = {**(defaults or {}).get(channel.type, {}), **channel.config}
    # strict=False: defaults from the TOML file arrive as strings after ${VAR} substitution ("587")
    config = _convert(merged, cls.Config, "config", strict=False)
    try:
        config.validate()
    except ValidationError:
        raise
    except ValueError as exc:
        raise _err("config", str(exc)) from None
    return config


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[key] = {k: _mask_header(str(k), v) for k, v in value.items()}
        elif isinstance(value, str) and value and _SECRET_KEY.search(key):
            out[key] = _mask_url(value) if value.startswith(("http://", "https://")) else MASK
        elif isinstance(value, str) and key.endswith("url") and "://" in value:
            out[key] = _mask_url(value, keep_path=True)
        else:
            out[key] = value
    return out


def restore_secrets(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """Where ``new`` carries the masked form of a value of ``old`` (a GET body PUT back), keep
    the old value, so that masking never destroys a secret."""
    masked = redact_config(old)
    out = dict(new)
    for key, value in new.items():
        if key not in old or value == old[key]:
            continue
        if isinstance(value, dict) and isinstance(old[key], Mapping):
            out[key] = {
                k: old[key][k] if k in old[key] and v == masked[key].get(k) else v for k, v in value.items()
            }
        elif value == masked.get(key):
            out[key] = old[key]
    return out


def _mask_header(name: str, value: Any) -> Any:
    if isinstance(value, str) and value and (_SECRET_KEY.search(name) or name.lower().startswith("x-api")):
        return MASK
    return value


def _mask_url(url: str, *, keep_path: bool = False) -> str:
    """Keep scheme and host (and, for non-secret URLs, the path); mask credentials and query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return MASK
    if parts.username or parts.password:
        host = f"{MASK}@{host}"
    if not keep_path:
        return urlunsplit((parts.scheme, host, "/" + MASK, "", ""))
    query = "&".join(
        f"{k}={MASK}" if _SECRET_KEY.search(k) or k.lower() in ("key", "sig", "signature") else f"{k}={v}"
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


# -- silences -----------------------------------------------------------------------------------

_SILENCE_ALIASES = {"startsAt": "starts_at", "endsAt": "ends_at", "createdBy": "created_by"}
_MATCHER_ALIASES = {"isRegex": "is_regex", "isEqual": "is_equal"}


def silence_from_json(obj: Any, *, now_ns: int) -> Silence:
    """Accepts ``{rule_id?, matchers?, starts_at?, ends_at? | duration?, comment?, created_by?}``;
    ``matchers`` is ``{label: value}`` or Alertmanager's ``[{name, value, isRegex, isEqual}]``."""
    body = {_SILENCE_ALIASES.get(k, k): v for k, v in _object(obj, "").items() if k not in READ_ONLY}
    raw = body.pop("matchers", [])
    if isinstance(raw, Mapping):
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise _err("matchers", "expected an object {label: value} or a list of matchers")
    matchers: list[Matcher] = []
    for i, m in enumerate(raw):
        field = f"matchers[{i}]"
        m = {_MATCHER_ALIASES.get(k, k): v for k, v in _object(m, field).items()}
        matcher = _try_matcher(m, field)
        if not _LABEL.fullmatch(matcher.name):
            raise _err(f"{field}.name", f"{matcher.name!r} is not a label name")
        matchers.append(matcher)
    starts = _timestamp(body.pop("starts_at", None), "starts_at", now_ns)
    duration = body.pop("duration", None)
    if "ends_at" in body and duration is not None:
        raise _err("duration", "give ends_at or duration, not both")
    if duration is not None:
        if not isinstance(duration, str):
            raise _err("duration", "expected a duration such as '2h'")
        ends = starts + _duration(duration, "duration")
    elif "ends_at" in body:
        ends = _timestamp(body.pop("ends_at"), "ends_at", now_ns)
    else:
        raise _err("ends_at", "required (or give duration, e.g. '2h')")
    if ends <= starts:
        raise _err("ends_at", "must be after starts_at")
    silence = _convert({**body, "starts_ns": starts, "ends_ns": ends}, Silence, "")
    silence.matchers = matchers
    if not silence.rule_id and not matchers:
        raise _err("matchers", "give rule_id or at least one matcher: a silence of everything is refused")
    return silence


def _try_matcher(m: dict[str, Any], field: str) -> Matcher:
    matcher: Matcher = _convert(m, Matcher, field)
    if matcher.is_regex:
        if len(matcher.value) > 1000:
            raise _err(f"{field}.value", "regular expression longer than 1000 characters")
        try:
            re.compile(matcher.value)
        except re.error as exc:
            raise _err(f"{field}.value", f"bad regular expression: {exc}") from None
    return matcher


def _timestamp(value: Any, field: str, now_ns: int) -> int:
    if value is None:
        return now_ns
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _err(field, str(exc)) from None


# -- helpers ------------------------------------------------------------------------------------

_MSGSPEC_AT = re.compile(r" - at `\$(.*)`$")
_MSGSPEC_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `([^`]*)`")


def _convert(obj: Any, typ: Any, prefix: str, *, strict: bool = True) -> Any:
    try:
        return msgspec.convert(obj, typ, strict=strict)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        path = ""
        m = _MSGSPEC_AT.search(msg)
        if m:
            path = m.group(1).replace("[...]", "")
            msg = msg[: m.start()]
        f = _MSGSPEC_FIELD.match(msg)
        if f:
            path = f"{path}.{f.group(1)}"
            msg = "is required" if "missing" in msg else "unknown field"
        field = ".".join(p for p in (prefix, path.lstrip(".")) if p) or prefix
        allowed = _ALLOWED.get(field.rsplit(".", 1)[-1])
        if allowed and msg.startswith("Invalid enum value "):
            msg = f"{msg[len('Invalid enum value ') :]} is not one of {', '.join(allowed)}"
        raise _err(field, msg.replace("`float`", "a number").replace("`int`", "an integer")) from None


def _object(obj: Any, field: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _err(field or "body", "expected a JSON object")
    return obj


def _check_name(name: str, field: str, *, strict: bool = True) -> None:
    if strict and not _NAME.fullmatch(name):
        raise _err(field, f"{name[:80]!r} is not a valid name (letters, digits, _ . -; at most 64)")
    if not name.strip() or len(name) > 256:
        raise _err(field, "must be 1 to 256 characters")


def _check_labels(labels: Mapping[str, str], field: str) -> None:
    for key in labels:
        if not _LABEL.fullmatch(key):
            raise _err(f"{field}.{key}"[:200], f"{key[:80]!r} is not a label name")


def _public(struct: msgspec.Struct) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(struct)
    for key in ("created_ns", "updated_ns"):
        if key in out:
            ns = out.pop(key)
            out[key.replace("_ns", "_at")] = format_ts(ns) if ns else None
    return out


def invalid_option(option: str, problem: str) -> ValidationError:
    """For channel Config.validate(): the error for ``config.<option>``."""
    return _err(f"config.{option}", problem)


def _err(field: str, problem: str) -> ValidationError:
    return ValidationError(f"{field}: {problem}" if field else problem, details={"field": field or "body"})
