"""Spans in and traces out: the seed's JSON span, Zipkin v2, tag filters, search parameters, and
the two trace renderings (our ``GET /traces/{id}`` view and Jaeger's query-API JSON).

Every input path builds a :class:`~airisd.model.Span` and passes it through :func:`validate_span`,
so the rules below hold whatever the wire format:

- ids (trace, span, parent) are 1-64 characters of ``[A-Za-z0-9_-]``: the seed's ids
  (``abc123def456ghi789``, ``span_001``) are not hex, OTLP's and Zipkin's are;
- a span may not end before it starts, nor be its own parent;
- tags are flat: values are str, int, float or bool (no nesting, no null, no NaN);
- limits: at most ``MAX_TAGS`` tags, ``MAX_LOGS`` logs, names and values of bounded length.

Bad input raises :class:`~airisd.errors.ValidationError` whose details name the field (in the
seed's vocabulary: ``end_time``, ``tags.http.status_code``, ``logs[0].timestamp``) and, in a batch,
the span's ``index``.

A span is an *error* span when its ``error`` tag is true, its HTTP status code is 5xx, or its
OpenTelemetry status is ERROR; the store indexes that flag and the tag filter ``error:true``
matches it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from airisd.errors import ValidationError
from airisd.model import Span, SpanLog
from airisd.timeparse import MAX_TS_NS, format_ts, parse_duration, parse_timestamp

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TAGS = 128  # per span as sent; OTLP adds resource and status tags on top (see otlp_traces)
MAX_LOGS = 256
MAX_LOG_FIELDS = 128
MAX_KEY_LEN = 256
MAX_VALUE_LEN = 8192
MAX_OPERATION_LEN = 512
MAX_SERVICE_LEN = 256
MAX_BATCH_SPANS = 10_000
MAX_TAG_FILTERS = 32
MAX_SEARCH_LIMIT = 1500
DEFAULT_SEARCH_LIMIT = 20
DURATION_TOLERANCE_NS = 1_000_000  # duration_ms and end - start may disagree by rounding, not more
SPAN_KINDS = frozenset({"server", "client", "producer", "consumer", "internal"})
RESOURCE_PREFIX = "resource."  # resource attributes (OTLP) kept as tags under this prefix

TagValue = str | int | float | bool

_SEED_FIELDS = frozenset(
    {
        "trace_id",
        "span_id",
        "parent_span_id",
        "operation_name",
        "start_time",
        "end_time",
        "duration_ms",
        "service_name",
        "tags",
        "logs",
        "kind",
        "error",
    }
)


def _fail(message: str, field_name: str, index: int | None) -> ValidationError:
    details: dict[str, Any] = {"field": field_name}
    if index is not None:
        details["index"] = index
    return ValidationError(message, details=details)


# -- validation shared by every input format ---------------------------------------------------


def check_id(value: object, field_name: str, index: int | None = None) -> str:
    """Return value if it is a well-formed id, else raise naming field_name."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise _fail(
            f"{field_name} must be 1-64 characters of letters, digits, '_' or '-', got {shown!r}",
            field_name,
            index,
        )
    return value


def _check_scalar(value: object, field_name: str, index: int | None) -> TagValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise _fail(f"{field_name} does not fit in 64 bits", field_name, index)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(f"{field_name} must be a finite number", field_name, index)
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LEN:
            raise _fail(f"{field_name} is longer than {MAX_VALUE_LEN} characters", field_name, index)
        _check_text(value, field_name, index)
        return value
    raise _fail(
        f"{field_name} must be a string, number or boolean, got {type(value).__name__}", field_name, index
    )


def _check_text(value: str, field_name: str, index: int | None) -> None:
    """Reject strings that cannot be stored as UTF-8 (lone surrogates)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _fail(f"{field_name} is not valid Unicode text", field_name, index) from None


def _check_key(key: object, where: str, index: int | None) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise _fail(
            f"{where} keys must be non-empty strings of at most {MAX_KEY_LEN} characters", where, index
        )
    _check_text(key, where, index)
    return key


def validate_span(span: Span, index: int | None = None, *, max_tags: int = MAX_TAGS) -> Span:
    """Check a span built by any decoder; return it, or raise ValidationError naming the field."""
    check_id(span.trace_id, "trace_id", index)
    check_id(span.span_id, "span_id", index)
    if span.parent_span_id:
        check_id(span.parent_span_id, "parent_span_id", index)
        if span.parent_span_id == span.span_id:
            raise _fail("a span cannot be its own parent", "parent_span_id", index)
    if len(span.operation_name) > MAX_OPERATION_LEN:
        raise _fail(f"operation_name is longer than {MAX_OPERATION_LEN} characters", "operation_name", index)
    if not span.service_name or len(span.service_name) > MAX_SERVICE_LEN:
        raise _fail(f"service_name must be 1-{MAX_SERVICE_LEN} characters", "service_name", index)
    _check_text(span.operation_name, "operation_name", index)
    _check_text(span.service_name, "service_name", index)
    if not 0 <= span.start_ts <= MAX_TS_NS:
        raise _fail("start_time is out of range (1970-2262)", "start_time", index)
    if not 0 <= span.end_ts <= MAX_TS_NS:
        raise _fail("end_time is out of range (1970-2262)", "end_time", index)
    if span.end_ts < span.start_ts:
        raise _fail("end_time is before start_time", "end_time", index)
    if span.kind and span.kind not in SPAN_KINDS:
        raise _fail(f"kind must be one of {sorted(SPAN_KINDS)}, got {span.kind!r}", "kind", index)
    if len(span.tags) > max_tags:
        raise _fail(f"at most {max_tags} tags per span, got {len(span.tags)}", "tags", index)
    for key, value in span.tags.items():
        _check_key(key, "tags", index)
        _check_scalar(value, f"tags.{key}", index)
    if len(span.logs) > MAX_LOGS:
        raise _fail(f"at most {MAX_LOGS} logs per span, got {len(span.logs)}", "logs", index)
    for i, log in enumerate(span.logs):
        if not 0 <= log.ts <= MAX_TS_NS:
            raise _fail("timestamp is out of range (1970-2262)", f"logs[{i}].timestamp", index)
        if len(log.message) > MAX_VALUE_LEN:
            raise _fail(f"message is longer than {MAX_VALUE_LEN} characters", f"logs[{i}].message", index)
        _check_text(log.message, f"logs[{i}].message", index)
        if len(log.fields) > MAX_LOG_FIELDS:
            raise _fail(f"at most {MAX_LOG_FIELDS} fields per log", f"logs[{i}]", index)
        for key, value in log.fields.items():
            _check_key(key, f"logs[{i}]", index)
            _check_scalar(value, f"logs[{i}].{key}", index)
    return span


def _fields_ok(fields: Mapping[str, Any]) -> bool:
    for key, value in fields.items():
        if not key or len(key) > MAX_KEY_LEN or (type(value) is str and len(value) > MAX_VALUE_LEN):
            return False
    return True


def decoded_span_ok(span: Span, *, max_tags: int = MAX_TAGS) -> bool:
    """True if a span a protobuf decoder built certainly passes :func:`validate_span`. There the ids
    are hex the decoder wrote, strings are valid UTF-8 (the parser checks) and numbers fit, so only
    the limits are left; one pass without a call per value, since validation was half of decoding.
    On False, run validate_span for the error that names the field."""
    logs = span.logs
    return (
        span.parent_span_id != span.span_id
        and len(span.operation_name) <= MAX_OPERATION_LEN
        and 0 < len(span.service_name) <= MAX_SERVICE_LEN
        and 0 <= span.start_ts <= span.end_ts <= MAX_TS_NS
        and len(span.tags) <= max_tags
        and _fields_ok(span.tags)
        and len(logs) <= MAX_LOGS
        and all(0 <= log.ts <= MAX_TS_NS and len(log.message) <= MAX_VALUE_LEN
                and len(log.fields) <= MAX_LOG_FIELDS and _fields_ok(log.fields) for log in logs)
    )


def is_error(tags: Mapping[str, TagValue]) -> bool:
    """The error rule: tag error=true, an HTTP 5xx status code, or OpenTelemetry status ERROR."""
    flag = tags.get("error")
    if flag is True or (isinstance(flag, str) and flag.lower() == "true"):
        return True
    # Called for every span on the ingest path: absent keys skip the type tests, and a tuple in
    # isinstance is cheaper than a union.
    for key in _STATUS_CODE_KEYS:
        code = tags.get(key)
        if code is None:
            continue
        if isinstance(code, str):
            if code.isascii() and code.isdigit() and int(code) >= 500:
                return True
        elif isinstance(code, (int, float)) and not isinstance(code, bool) and code >= 500:
            return True
    return tags.get("otel.status_code") == "ERROR"


_STATUS_CODE_KEYS = ("http.status_code", "http.response.status_code")


# -- the seed's JSON span ----------------------------------------------------------------------


def _timestamp(obj: Mapping[str, Any], key: str, index: int | None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _fail(f"{key}: {exc}", key, index) from None


def _string(obj: Mapping[str, Any], key: str, index: int | None, *, limit: int) -> str:
    value = obj.get(key)
    if value is None:
        raise _fail(f"{key} is required", key, index)
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{key} must be a non-empty string", key, index)
    if len(value) > limit:
        raise _fail(f"{key} is longer than {limit} characters", key, index)
    return value


def _span_times(obj: Mapping[str, Any], index: int | None) -> tuple[int, int]:
    """Any two of start_time, end_time and duration_ms give the third; all three must agree."""
    start = _timestamp(obj, "start_time", index)
    end = _timestamp(obj, "end_time", index)
    raw = obj.get("duration_ms")
    dur: int | None = None
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise _fail("duration_ms must be a number of milliseconds", "duration_ms", index)
        if raw < 0:
            raise _fail("duration_ms must not be negative", "duration_ms", index)
        dur = round(raw * 1_000_000)
    if start is None:
        if end is None or dur is None:
            raise _fail("start_time is required (or end_time and duration_ms)", "start_time", index)
        start = end - dur
        if start < 0:
            raise _fail("end_time - duration_ms is before 1970", "duration_ms", index)
    if end is None:
        if dur is None:
            raise _fail("end_time or duration_ms is required", "end_time", index)
        end = start + dur
    if end < start:
        raise _fail("end_time is before start_time", "end_time", index)
    if dur is not None and abs((end - start) - dur) > DURATION_TOLERANCE_NS:
        raise _fail(
            f"duration_ms {raw} disagrees with end_time - start_time ({(end - start) / 1e6:g} ms)",
            "duration_ms",
            index,
        )
    return start, end


def _tags_from_json(raw: object, index: int | None) -> dict[str, TagValue]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("tags must be an object of string keys to scalar values", "tags", index)
    if len(raw) > MAX_TAGS:
        raise _fail(f"at most {MAX_TAGS} tags per span, got {len(raw)}", "tags", index)
    out: dict[str, TagValue] = {}
    for key, value in raw.items():
        _check_key(key, "tags", index)
        if value is None:
            raise _fail(f"tags.{key} is null; omit the tag instead", f"tags.{key}", index)
        out[key] = _check_scalar(value, f"tags.{key}", index)
    return out


def _logs_from_json(raw: object, index: int | None) -> list[SpanLog]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail("logs must be a list of {timestamp, message, ...} objects", "logs", index)
    if len(raw) > MAX_LOGS:
        raise _fail(f"at most {MAX_LOGS} logs per span, got {len(raw)}", "logs", index)
    logs = []
    for i, entry in enumerate(raw):
        where = f"logs[{i}]"
        if not isinstance(entry, dict):
            raise _fail(f"{where} must be an object", where, index)
        if entry.get("timestamp") is None:
            raise _fail(f"{where}.timestamp is required", f"{where}.timestamp", index)
        try:
            ts = parse_timestamp(entry["timestamp"])
        except ValueError as exc:
            raise _fail(f"{where}.timestamp: {exc}", f"{where}.timestamp", index) from None
        message = entry.get("message", "")
        if not isinstance(message, str):
            raise _fail(f"{where}.message must be a string", f"{where}.message", index)
        fields = {k: v for k, v in entry.items() if k not in ("timestamp", "message")}
        logs.append(SpanLog(ts=ts, message=message, fields=fields))
    return logs


def span_from_json(obj: object, *, index: int | None = None) -> Span:
    """Build a Span from the seed's JSON object (``POST /traces``); raise ValidationError.

    Unknown top-level fields are rejected (a typo such as ``servce_name`` would otherwise lose
    data silently). ``kind`` (server, client, ...) and ``error`` (bool) are optional extras.
    """
    if not isinstance(obj, dict):
        raise _fail("a span must be a JSON object", "span", index)
    unknown = sorted(k for k in obj if k not in _SEED_FIELDS)
    if unknown:
        raise _fail(f"unknown span field {unknown[0]!r}", unknown[0], index)
    for key in ("trace_id", "span_id"):
        if obj.get(key) is None:
            raise _fail(f"{key} is required", key, index)
        check_id(obj[key], key, index)
    parent = obj.get("parent_span_id")
    if parent is None or parent == "":
        parent = ""
    else:
        check_id(parent, "parent_span_id", index)
    operation = _string(obj, "operation_name", index, limit=MAX_OPERATION_LEN)
    service = _string(obj, "service_name", index, limit=MAX_SERVICE_LEN)
    start, end = _span_times(obj, index)
    kind = obj.get("kind")
    kind = "" if kind is None else kind
    if not isinstance(kind, str) or (kind and kind.lower() not in SPAN_KINDS):
        raise _fail(f"kind must be one of {sorted(SPAN_KINDS)}", "kind", index)
    explicit_error = obj.get("error", False)
    if not isinstance(explicit_error, bool):
        raise _fail("error must be true or false", "error", index)
    tags = _tags_from_json(obj.get("tags"), index)
    span = Span(
        trace_id=obj["trace_id"],
        span_id=obj["span_id"],
        parent_span_id=parent,
        operation_name=operation,
        service_name=service,
        start_ts=start,
        end_ts=end,
        kind=kind.lower(),
        error=explicit_error or is_error(tags),
        tags=tags,
        logs=_logs_from_json(obj.get("logs"), index),
    )
    return validate_span(span, index)


def spans_from_payload(obj: object) -> list[Span]:
    """``POST /traces`` body: one span object, ``{"spans": [...]}`` or a bare list of spans."""
    if isinstance(obj, dict) and "spans" in obj and "trace_id" not in obj:
        if len(obj) != 1:
            extra = sorted(k for k in obj if k != "spans")[0]
            raise _fail(f"unknown batch field {extra!r}", extra, None)
        obj = obj["spans"]
        if not isinstance(obj, list):
            raise _fail("spans must be a list", "spans", None)
    if isinstance(obj, list):
        if not obj:
            raise _fail("spans must not be empty", "spans", None)
        if len(obj) > MAX_BATCH_SPANS:
            raise _fail(f"at most {MAX_BATCH_SPANS} spans per request", "spans", None)
        return [span_from_json(item, index=i) for i, item in enumerate(obj)]
    return [span_from_json(obj)]


# -- Zipkin v2 JSON ----------------------------------------------------------------------------


def _zipkin_span(obj: object, index: int) -> Span:
    if not isinstance(obj, dict):
        raise _fail("a Zipkin span must be a JSON object", "span", index)
    trace_id = check_id(obj.get("traceId"), "traceId", index)
    span_id = check_id(obj.get("id"), "id", index)
    parent = obj.get("parentId") or ""
    if parent:
        check_id(parent, "parentId", index)
    ts, dur = obj.get("timestamp"), obj.get("duration", 0)
    for key, value in (("timestamp", ts), ("duration", dur)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(f"{key} must be a non-negative integer of microseconds", key, index)
    assert isinstance(ts, int) and isinstance(dur, int)
    name = obj.get("name") or ""
    if not isinstance(name, str):
        raise _fail("name must be a string", "name", index)
    kind = obj.get("kind") or ""
    if not isinstance(kind, str) or (kind and kind.lower() not in SPAN_KINDS):
        raise _fail("kind must be CLIENT, SERVER, PRODUCER or CONSUMER", "kind", index)
    local = obj.get("localEndpoint") or {}
    remote = obj.get("remoteEndpoint") or {}
    if not isinstance(local, dict) or not isinstance(remote, dict):
        raise _fail("endpoints must be objects", "localEndpoint", index)
    service = local.get("serviceName") or "unknown"
    if not isinstance(service, str):
        raise _fail("localEndpoint.serviceName must be a string", "localEndpoint.serviceName", index)
    raw_tags = obj.get("tags") or {}
    if not isinstance(raw_tags, dict):
        raise _fail("tags must be an object of strings", "tags", index)
    tags: dict[str, TagValue] = {}
    for key, value in raw_tags.items():
        _check_key(key, "tags", index)
        if not isinstance(value, str):
            raise _fail(f"tags.{key} must be a string (Zipkin v2)", f"tags.{key}", index)
        tags[key] = value
    for src, dst in (("serviceName", "peer.service"), ("ipv4", "net.peer.ip"), ("ipv6", "net.peer.ip")):
        if remote.get(src) and dst not in tags:
            tags[dst] = _check_scalar(remote[src], f"remoteEndpoint.{src}", index)
    if isinstance(remote.get("port"), int) and "net.peer.port" not in tags:
        tags["net.peer.port"] = remote["port"]
    logs = []
    for i, ann in enumerate(obj.get("annotations") or []):
        if not isinstance(ann, dict) or not isinstance(ann.get("timestamp"), int):
            raise _fail("annotations need an integer timestamp", f"annotations[{i}].timestamp", index)
        value = ann.get("value", "")
        if not isinstance(value, str):
            raise _fail("annotation value must be a string", f"annotations[{i}].value", index)
        logs.append(SpanLog(ts=ann["timestamp"] * 1000, message=value))
    # Zipkin's convention: an "error" tag with any value (usually the message) marks a failure.
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        operation_name=name,
        service_name=service,
        start_ts=ts * 1000,
        end_ts=(ts + dur) * 1000,
        kind=kind.lower(),
        error="error" in tags or is_error(tags),
        tags=tags,
        logs=logs,
    )
    return validate_span(span, index)


def spans_from_zipkin(body: bytes) -> list[Span]:
    """Decode a Zipkin v2 JSON body (``POST /api/v2/spans``): a list of spans, times in µs."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"body is not valid JSON: {exc}", "body", None) from None
    if not isinstance(data, list):
        raise _fail("a Zipkin v2 body is a JSON list of spans", "body", None)
    if len(data) > MAX_BATCH_SPANS:
        raise _fail(f"at most {MAX_BATCH_SPANS} spans per request", "body", None)
    return [_zipkin_span(obj, i) for i, obj in enumerate(data)]


# -- tag filters and search parameters ---------------------------------------------------------


def stringify_tag(value: TagValue) -> str:
    """How a tag value compares with a filter: bools as true/false, 500.0 as 500."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_tag_filters(text: str, *, param: str = "tags") -> list[tuple[str, str]]:
    """``error:true,http.status_code:500`` or Jaeger's JSON ``{"error":"true"}`` -> pairs.

    In the colon form the first ':' splits key from value, so values may contain ':' but not ','.
    """
    text = text.strip()
    if not text:
        return []
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _fail(f"{param} is not valid JSON", param, None) from None
        if not isinstance(obj, dict):
            raise _fail(f"{param} must be a JSON object", param, None)
        for key, value in obj.items():
            if isinstance(value, dict | list) or value is None:
                raise _fail(f"{param}: the value of {key!r} must be a scalar", param, None)
            pairs.append((key.strip(), stringify_tag(value)))
    else:
        for item in text.split(","):
            key, sep, value = item.partition(":")
            if not sep:
                raise _fail(f"{param}: {item.strip()[:64]!r} is not key:value", param, None)
            pairs.append((key.strip(), value.strip()))
    for key, value in pairs:
        if not key or not value or len(key) > MAX_KEY_LEN or len(value) > MAX_VALUE_LEN:
            raise _fail(f"{param}: every filter needs a non-empty key and value", param, None)
    if len(pairs) > MAX_TAG_FILTERS:
        raise _fail(f"{param}: at most {MAX_TAG_FILTERS} tag filters", param, None)
    return pairs


def tags_match(tags: Mapping[str, TagValue], error: bool, filters: Iterable[tuple[str, str]]) -> bool:
    """True if every filter holds on this span. The key ``error`` tests the span's error flag;
    any other key also matches the resource attribute of that name (``resource.<key>``)."""
    for key, want in filters:
        if key == "error":
            if want != ("true" if error else "false"):
                return False
            continue
        value = tags.get(key)
        if value is None:
            value = tags.get(RESOURCE_PREFIX + key)
        if value is None or stringify_tag(value) != want:
            return False
    return True


def duration_param(name: str, text: str) -> int:
    """A duration query parameter ('500ms', '1.5s', '2m') in ns; ValidationError names it."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _fail(f"{name}: {exc}", name, None) from None


def timestamp_param(name: str, text: str) -> int:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise _fail(f"{name}: {exc}", name, None) from None


def limit_param(name: str, text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_SEARCH_LIMIT:
        raise _fail(f"{name} must be an integer from 1 to {MAX_SEARCH_LIMIT}", name, None)
    return int(text)


@dataclass
class TraceQuery:
    """Span-level search conditions: one span of a trace must satisfy all of them."""

    service: str | None = None
    operation: str | None = None
    from_ns: int | None = None
    to_ns: int | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    limit: int = DEFAULT_SEARCH_LIMIT

    def check(self, names: Mapping[str, str]) -> TraceQuery:
        if self.from_ns is not None and self.to_ns is not None and self.to_ns < self.from_ns:
            raise _fail(f"{names['to']} is before {names['from']}", names["to"], None)
        lo, hi = self.min_duration_ns, self.max_duration_ns
        if lo is not None and hi is not None and hi < lo:
            raise _fail(f"{names['max']} is below {names['min']}", names["max"], None)
        return self

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``TraceStore.search``."""
        return {
            "service": self.service,
            "operation": self.operation,
            "from_ns": self.from_ns,
            "to_ns": self.to_ns,
            "min_duration_ns": self.min_duration_ns,
            "max_duration_ns": self.max_duration_ns,
            "tags": self.tags,
            "limit": self.limit,
        }


def _nonempty(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    return value if value else None


def search_query(params: Mapping[str, str]) -> TraceQuery:
    """``GET /traces/search`` parameters: service, operation, from, to, min_duration,
    max_duration, tags, limit."""
    q = TraceQuery(service=_nonempty(params, "service"), operation=_nonempty(params, "operation"))
    if v := _nonempty(params, "from"):
        q.from_ns = timestamp_param("from", v)
    if v := _nonempty(params, "to"):
        q.to_ns = timestamp_param("to", v)
    if v := _nonempty(params, "min_duration"):
        q.min_duration_ns = duration_param("min_duration", v)
    if v := _nonempty(params, "max_duration"):
        q.max_duration_ns = duration_param("max_duration", v)
    if v := _nonempty(params, "tags"):
        q.tags = parse_tag_filters(v)
    if v := _nonempty(params, "limit"):
        q.limit = limit_param("limit", v)
    return q.check({"from": "from", "to": "to", "min": "min_duration", "max": "max_duration"})


def _micros_param(name: str, text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise _fail(f"{name} must be epoch microseconds", name, None)
    return int(text) * 1000


def jaeger_search_query(params: Mapping[str, str]) -> TraceQuery:
    """Jaeger's ``/api/traces`` parameters: start/end in epoch µs, minDuration/maxDuration as Go
    durations, tags as JSON; ``lookback`` is ignored (the UI also sends start and end)."""
    q = TraceQuery(service=_nonempty(params, "service"), operation=_nonempty(params, "operation"))
    if v := _nonempty(params, "start"):
        q.from_ns = _micros_param("start", v)
    if v := _nonempty(params, "end"):
        q.to_ns = _micros_param("end", v)
    if v := _nonempty(params, "minDuration"):
        q.min_duration_ns = duration_param("minDuration", v)
    if v := _nonempty(params, "maxDuration"):
        q.max_duration_ns = duration_param("maxDuration", v)
    if v := _nonempty(params, "tags"):
        q.tags = parse_tag_filters(v, param="tags")
    if v := _nonempty(params, "limit"):
        q.limit = limit_param("limit", v)
    return q.check({"from": "start", "to": "end", "min": "minDuration", "max": "maxDuration"})


# -- trace structure and our own rendering -----------------------------------------------------


def _ordered(spans: Iterable[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.start_ts, s.span_id))


def trace_tree(spans: list[Span]) -> tuple[list[Span], dict[str, list[str]], dict[str, int]]:
    """Order spans by start; return (ordered, children ids per span id, depth per span id).

    Roots are spans without a parent, then spans whose parent is missing (orphans); spans left
    unreached (a parent cycle) become roots too, so every span gets a depth.
    """
    ordered = _ordered(spans)
    ids = {s.span_id for s in ordered}
    children: dict[str, list[str]] = {s.span_id: [] for s in ordered}
    roots = []
    for s in ordered:
        if s.parent_span_id and s.parent_span_id in ids and s.parent_span_id != s.span_id:
            if s.span_id not in children[s.parent_span_id]:
                children[s.parent_span_id].append(s.span_id)
        else:
            roots.append(s.span_id)
    depth: dict[str, int] = {}

    def walk(start: str) -> None:
        stack = [(start, 0)]
        while stack:
            sid, d = stack.pop()
            if sid in depth:
                continue
            depth[sid] = d
            stack.extend((c, d + 1) for c in children[sid])

    for r in roots:
        walk(r)
    for s in ordered:
        if s.span_id not in depth:
            walk(s.span_id)
    return ordered, children, depth


def root_span(spans: list[Span]) -> Span:
    """The span a trace is named after: the earliest without a parent, else the earliest span
    whose parent is missing, else the earliest span."""
    ordered = _ordered(spans)
    ids = {s.span_id for s in ordered}
    for s in ordered:
        if not s.parent_span_id:
            return s
    for s in ordered:
        if s.parent_span_id not in ids:
            return s
    return ordered[0]


def trace_summary(spans: list[Span]) -> dict[str, Any]:
    """One search result: the trace's root, start, total duration, services and error flag."""
    root = root_span(spans)
    start = min(s.start_ts for s in spans)
    end = max(s.end_ts for s in spans)
    return {
        "trace_id": root.trace_id,
        "root_service": root.service_name,
        "root_operation": root.operation_name,
        "start_time": format_ts(start),
        "duration_ms": (end - start) / 1e6,
        "span_count": len(spans),
        "services": sorted({s.service_name for s in spans}),
        "error": any(s.error for s in spans),
    }


def span_to_json(span: Span) -> dict[str, Any]:
    """A span in the seed's own shape (what ``POST /traces`` takes), times in RFC 3339."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "operation_name": span.operation_name,
        "service_name": span.service_name,
        "start_time": format_ts(span.start_ts),
        "end_time": format_ts(span.end_ts),
        "duration_ms": span.duration_ns / 1e6,
        "kind": span.kind or None,
        "error": span.error,
        "tags": dict(span.tags),
        "logs": [{**log.fields, "timestamp": format_ts(log.ts), "message": log.message} for log in span.logs],
    }


def trace_view(spans: list[Span]) -> dict[str, Any]:
    """``GET /traces/{id}``: the summary plus every span in start order, each with its
    ``children`` (span ids, in start order) and ``depth`` in the tree."""
    if not spans:
        raise ValueError("trace_view needs at least one span")
    ordered, children, depth = trace_tree(spans)
    view = trace_summary(ordered)
    view["end_time"] = format_ts(max(s.end_ts for s in ordered))
    out = []
    for s in ordered:
        item = span_to_json(s)
        item["children"] = children[s.span_id]
        item["depth"] = depth[s.span_id]
        out.append(item)
    view["spans"] = out
    return view


# -- Jaeger query API JSON ---------------------------------------------------------------------


def _jaeger_kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    return {"key": key, "type": "string", "value": value if isinstance(value, str) else str(value)}


def jaeger_trace(spans: list[Span]) -> dict[str, Any]:
    """One trace in the Jaeger query API's JSON model (``/api/traces`` ``data`` items), as read
    by the Jaeger UI and Grafana's Jaeger data source: times and durations in µs, tags as typed
    key/value lists, one process per (service, resource tags), ``resource.*`` tags moved to it."""
    if not spans:
        raise ValueError("jaeger_trace needs at least one span")
    ordered = _ordered(spans)
    ids = {s.span_id for s in ordered}
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[tuple[str, bytes], str] = {}
    out = []
    for s in ordered:
        resource = {k[len(RESOURCE_PREFIX) :]: v for k, v in s.tags.items() if k.startswith(RESOURCE_PREFIX)}
        pkey = (s.service_name, orjson.dumps(resource, option=orjson.OPT_SORT_KEYS))
        pid = process_ids.get(pkey)
        if pid is None:
            pid = process_ids[pkey] = f"p{len(process_ids) + 1}"
            processes[pid] = {
                "serviceName": s.service_name,
                "tags": [_jaeger_kv(k, v) for k, v in sorted(resource.items())],
            }
        tags = [_jaeger_kv(k, v) for k, v in s.tags.items() if not k.startswith(RESOURCE_PREFIX)]
        if s.kind and "span.kind" not in s.tags:
            tags.append(_jaeger_kv("span.kind", s.kind))
        old = s.tags.get("error")
        if s.error and old is not True:
            # Jaeger UI and Grafana flag a span by a boolean error tag; keep a Zipkin-style
            # error message under error.message.
            tags = [t for t in tags if t["key"] != "error"]
            tags.append(_jaeger_kv("error", True))
            if isinstance(old, str) and old.lower() != "true" and old and "error.message" not in s.tags:
                tags.append(_jaeger_kv("error.message", old))
        refs, warnings = [], None
        if s.parent_span_id:
            refs.append({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})
            if s.parent_span_id not in ids:
                warnings = [f"parent span {s.parent_span_id} is not in this trace"]
        logs = []
        for log in s.logs:
            fields = [_jaeger_kv("event", log.message)] if log.message else []
            fields.extend(_jaeger_kv(k, v) for k, v in log.fields.items())
            logs.append({"timestamp": log.ts // 1000, "fields": fields})
        out.append(
            {
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "flags": 1,
                "operationName": s.operation_name,
                "references": refs,
                "startTime": s.start_ts // 1000,
                "duration": s.duration_ns // 1000,
                "tags": tags,
                "logs": logs,
                "processID": pid,
                "warnings": warnings,
            }
        )
    return {"traceID": ordered[0].trace_id, "spans": out, "processes": processes, "warnings": None}
