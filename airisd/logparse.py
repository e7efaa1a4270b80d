"""Turning what clients send into LogRecords: the JSON record and plain text lines.

JSON (``POST /logs``, ``/logs/batch`` items, and JSON lines in plain text): ``record_from_json``
takes the seed's structured record. ``message`` is required (a string, at most 64 KiB of UTF-8);
``level`` is normalised (a missing level is UNKNOWN; pino/bunyan numbers 10..60 are understood);
``timestamp`` goes through ``parse_timestamp`` (RFC 3339 or epoch s/ms; missing or null means the
time received); ``service``, ``trace_id``, ``span_id``, ``user_id``, ``request_id`` and
``stack_trace`` are strings (integers are written out, so ``"user_id": 12345`` is kept);
``labels`` is an object of at most 64 entries whose keys are at most 128 characters: string values
are kept, numbers and booleans are written out as text (``true``/``false``), null, objects and
arrays are refused, because a label is one flat string a query compares whole. Every other field
is kept in ``attributes``; nested objects are flattened to dotted keys (``{"http": {"method":
"GET"}}`` becomes ``http.method``) so that a query's ``http.method:GET`` finds it; arrays stay
arrays. At most 256 attributes after flattening.

Plain text (``POST /logs/plain``), one record per line, first match wins:

1. a JSON object line: as above, with the common logger spellings accepted (``msg`` for
   ``message``; ``time``, ``ts``, ``@timestamp`` for ``timestamp``; ``lvl``, ``severity`` for
   ``level``); a JSON line that is still not a valid record falls through to rule 5;
2. ``<timestamp> <LEVEL> [<service>] <message>``, the seed's format: the timestamp is
   RFC 3339 or ``YYYY-MM-DD HH:MM:SS[.fff|,fff]`` (UTC when it has no offset) and may be in
   brackets; the level may be in brackets or followed by ``:``; level and service are optional;
3. logfmt, ``ts=... level=... msg="..." service=... k=v``: every item must be ``key=value`` and
   one key must be ``msg``/``message`` or ``level``/``lvl``; the known keys fill the record's
   fields and the rest become string attributes; without ``msg`` (or with an empty one) the whole
   line is the message;
4. ``LEVEL message`` or ``[level] message`` with no timestamp (the bare level in capitals, so
   that "Info about x" stays a message);
5. anything else: the whole line is the message, level UNKNOWN, time received.

A line that cannot be stored (over 64 KiB) is refused with a ValidationError naming the line;
nothing is refused for being unrecognised.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import msgspec
import orjson

from airisd.errors import ValidationError
from airisd.model import LogRecord
from airisd.timeparse import MAX_TS_NS, NS_PER_MS, NS_PER_S, parse_timestamp

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "UNKNOWN")

MAX_MESSAGE_BYTES = 64 * 1024
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_FIELD_CHARS = 1024  # service and the ids
MAX_ATTRIBUTES = 256
MAX_ATTRIBUTE_KEY_CHARS = 256

_LEVEL_ALIASES = {
    "trace": "TRACE",
    "debug": "DEBUG",
    "dbg": "DEBUG",
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "notice": "INFO",
    "warn": "WARN",
    "warning": "WARN",
    "err": "ERROR",
    "error": "ERROR",
    "crit": "FATAL",
    "critical": "FATAL",
    "fatal": "FATAL",
    "panic": "FATAL",
    "emerg": "FATAL",
    "emergency": "FATAL",
    "alert": "FATAL",
}
# pino and bunyan write levels as numbers.
_NUMERIC_LEVELS = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}

# The record's own string fields, besides message and level.
_STRING_FIELDS = ("service", "trace_id", "span_id", "user_id", "request_id", "stack_trace")
_RESERVED = frozenset(("timestamp", "level", "message", "labels", *_STRING_FIELDS))
# _fast_record's bounds: text this short is within MAX_MESSAGE_BYTES whatever its characters, and
# integer timestamps below these are epoch seconds, then milliseconds (timeparse's rule).
_SAFE_TEXT_CHARS = MAX_MESSAGE_BYTES // 4
_S_LIMIT, _MS_LIMIT = 10**11, 10**14


def normalize_level(s: str) -> str:
    """Map the many spellings of a level onto TRACE, DEBUG, INFO, WARN, ERROR, FATAL or UNKNOWN."""
    return _LEVEL_ALIASES.get(s.strip().lower(), "UNKNOWN")


def is_level_word(s: str) -> bool:
    return s.strip().lower() in _LEVEL_ALIASES


# -- JSON records ----------------------------------------------------------------------------


def _err(field: str, message: str, index: int | None) -> ValidationError:
    where = field if index is None else f"logs[{index}].{field}"
    details: dict[str, Any] = {"field": field}
    if index is not None:
        details["index"] = index
    return ValidationError(f"{where}: {message}", details=details)


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _check_message(message: str, field: str, index: int | None) -> None:
    # A character is at most 4 bytes: only long strings need encoding to be measured.
    if len(message) > MAX_MESSAGE_BYTES // 4 and utf8_len(message) > MAX_MESSAGE_BYTES:
        raise _err(field, f"is longer than {MAX_MESSAGE_BYTES} bytes", index)


def _level_of(value: Any, index: int | None) -> str:
    if value is None:
        return "UNKNOWN"
    if isinstance(value, str):
        return normalize_level(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _NUMERIC_LEVELS.get(value, "UNKNOWN")
    raise _err("level", f"must be a string, got {type(value).__name__}", index)


def _string_field(obj: dict[str, Any], name: str, index: int | None) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _err(name, f"must be a string, got {type(value).__name__}", index)
    if name == "stack_trace":
        _check_message(value, name, index)
    elif len(value) > MAX_FIELD_CHARS:
        raise _err(name, f"is longer than {MAX_FIELD_CHARS} characters", index)
    return value


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _labels_of(value: Any, index: int | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err("labels", f"must be an object of strings, got {type(value).__name__}", index)
    if len(value) > MAX_LABELS:
        raise _err("labels", f"has {len(value)} entries; at most {MAX_LABELS} are allowed", index)
    out: dict[str, str] = {}
    for k, v in value.items():
        if not k or len(k) > MAX_LABEL_KEY_CHARS:
            raise _err("labels", f"label key {k[:40]!r} must be 1 to {MAX_LABEL_KEY_CHARS} characters", index)
        text = _scalar_text(v)
        if text is None:
            raise _err(f"labels.{k}", f"must be a string, number or boolean, got {type(v).__name__}", index)
        if len(text) > MAX_FIELD_CHARS:
            raise _err(f"labels.{k}", f"is longer than {MAX_FIELD_CHARS} characters", index)
        out[k] = text
    return out


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any], index: int | None) -> None:
    for k, v in value.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            _flatten(key, v, out, index)
            continue
        if len(key) > MAX_ATTRIBUTE_KEY_CHARS:
            raise _err(key[:40], f"attribute name is longer than {MAX_ATTRIBUTE_KEY_CHARS} characters", index)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[key] = v
        if len(out) > MAX_ATTRIBUTES:
            raise _err(key[:40], f"more than {MAX_ATTRIBUTES} attributes in one record", index)


def _fast_record(obj: dict[str, Any], received_ns: int) -> LogRecord | None:
    """The record when every field is of the usual type and well inside the limits, else None
    (then ``record_from_json``'s checks run and name what is wrong). Equal to what they would
    return (a property test holds them together); ~3x cheaper, which matters at 1000s a batch."""
    get = obj.get
    message = get("message")
    if type(message) is not str or len(message) > _SAFE_TEXT_CHARS:
        return None
    ts = get("timestamp")
    if ts is None:
        ts = received_ns
    elif type(ts) is int and 0 <= ts < _MS_LIMIT:  # epoch seconds or milliseconds, the usual
        ts *= NS_PER_S if ts < _S_LIMIT else NS_PER_MS
        if ts > MAX_TS_NS:
            return None
    else:
        return None
    level = get("level")
    if level is None:
        level = "UNKNOWN"
    elif type(level) is str:
        level = _LEVEL_ALIASES.get(level.strip().lower(), "UNKNOWN")
    else:
        return None
    fields = []
    for name in _STRING_FIELDS:
        value = get(name)
        if value is None:
            value = ""
        elif type(value) is not str or len(value) > MAX_FIELD_CHARS:
            return None  # ints are written out, long stack traces measured: the slow path
        fields.append(value)
    labels = get("labels")
    if labels is None:
        labels = {}
    elif type(labels) is not dict or len(labels) > MAX_LABELS:
        return None
    else:
        for k, v in labels.items():
            if not k or len(k) > MAX_LABEL_KEY_CHARS or type(v) is not str or len(v) > MAX_FIELD_CHARS:
                return None
        labels = dict(labels)  # the record's own, as the checked path makes it
    attributes: dict[str, Any] = {}
    if not _RESERVED.issuperset(obj):
        _flatten("", {k: v for k, v in obj.items() if k not in _RESERVED}, attributes, None)
    service, trace_id, span_id, user_id, request_id, stack_trace = fields
    return LogRecord(ts=ts, level=level, message=message, service=service, trace_id=trace_id, span_id=span_id,
                     labels=labels, stack_trace=stack_trace, user_id=user_id, request_id=request_id,
                     attributes=attributes)


_Field = Annotated[str, msgspec.Meta(max_length=MAX_FIELD_CHARS)]


class _WireRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A ``/logs/batch`` record of the usual shape: the named fields only, of their usual types,
    within ``_fast_record``'s bounds. Anything else fails to decode, and then the batch takes the
    dict path."""

    message: Annotated[str, msgspec.Meta(max_length=_SAFE_TEXT_CHARS)]
    timestamp: int | None = None
    level: str | None = None
    service: _Field = ""
    trace_id: _Field = ""
    span_id: _Field = ""
    user_id: _Field = ""
    request_id: _Field = ""
    stack_trace: _Field = ""
    labels: Annotated[
        dict[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_KEY_CHARS)], _Field],
        msgspec.Meta(max_length=MAX_LABELS),
    ] = {}


class _WireBatch(msgspec.Struct, forbid_unknown_fields=True):
    logs: list[_WireRecord]


_decode_wire_batch = msgspec.json.Decoder(_WireBatch).decode


def fast_batch(body: bytes, *, received_ns: int, max_records: int) -> list[LogRecord] | None:
    """``{"logs": [...]}`` decoded straight into LogRecords when every record has the usual shape
    (what ``_fast_record`` takes, and no other field), else None: then parse the JSON and use
    ``record_from_json``, which names what is wrong. The same records either way (a property test
    holds them together); ~3x cheaper than dicts then records, the biggest cost of a batch."""
    try:
        wire = _decode_wire_batch(body).logs
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if not wire or len(wire) > max_records:
        return None
    aliases = _LEVEL_ALIASES
    out = []
    for w in wire:
        ts = w.timestamp
        if ts is None:
            ts = received_ns
        elif 0 <= ts < _MS_LIMIT:
            ts *= NS_PER_S if ts < _S_LIMIT else NS_PER_MS
            if ts > MAX_TS_NS:
                return None
        else:
            return None
        level = w.level
        level = "UNKNOWN" if level is None else aliases.get(level.strip().lower(), "UNKNOWN")
        out.append(LogRecord(ts=ts, level=level, message=w.message, service=w.service, trace_id=w.trace_id,
                             span_id=w.span_id, labels=w.labels, stack_trace=w.stack_trace, user_id=w.user_id,
                             request_id=w.request_id, attributes={}))
    return out


def record_from_json(obj: Any, *, received_ns: int, index: int | None = None) -> LogRecord:
    """Validate one decoded JSON log record; raise ValidationError naming the field (and the
    batch index when given)."""
    if type(obj) is dict:
        try:
            rec = _fast_record(obj, received_ns)
        except ValidationError:
            rec = None  # raised again below, with the batch index in it
        if rec is not None:
            return rec
    return _checked_record(obj, received_ns, index)


def _checked_record(obj: Any, received_ns: int, index: int | None) -> LogRecord:
    """record_from_json, every field checked and converted one by one."""
    if not isinstance(obj, dict):
        where = "body" if index is None else f"logs[{index}]"
        details: dict[str, Any] = {"field": "body" if index is None else "logs"}
        if index is not None:
            details["index"] = index
        raise ValidationError(f"{where}: must be a JSON object, got {type(obj).__name__}", details=details)
    message = obj.get("message")
    if message is None:
        raise _err("message", "is required", index)
    if not isinstance(message, str):
        raise _err("message", f"must be a string, got {type(message).__name__}", index)
    _check_message(message, "message", index)
    ts_value = obj.get("timestamp")
    if ts_value is None:
        ts = received_ns
    else:
        try:
            ts = parse_timestamp(ts_value)
        except ValueError as exc:
            raise _err("timestamp", str(exc), index) from None
    fields = {name: _string_field(obj, name, index) for name in _STRING_FIELDS}
    attributes: dict[str, Any] = {}
    extra = {k: v for k, v in obj.items() if k not in _RESERVED}
    if extra:
        _flatten("", extra, attributes, index)
    return LogRecord(
        ts=ts,
        level=_level_of(obj.get("level"), index),
        message=message,
        labels=_labels_of(obj.get("labels"), index),
        attributes=attributes,
        **fields,
    )


# -- plain text lines ------------------------------------------------------------------------

_TS = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:[Zz]|[+-]\d{2}:?\d{2})?"
_TS_PREFIX = re.compile(rf"(?:\[(?P<bts>{_TS})\]|(?P<ts>{_TS}))(?:\s+|$)")
_LEVEL_WORD = re.compile(r"(?:\[(?P<blevel>[A-Za-z]{1,16})\]|(?P<level>[A-Za-z]{1,16}):?)(?:\s+|$)")
_UPPER_LEVEL_WORD = re.compile(r"(?:\[(?P<blevel>[A-Za-z]{1,16})\]|(?P<level>[A-Z]{1,16}):?)\s+")
_SERVICE = re.compile(r"\[(?P<service>[^\]\s]{1,256})\]:?(?:\s+|$)")
_LOGFMT_PAIR = re.compile(r'([^\s="]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))(?=\s|$)')
_LOGFMT_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_LOGFMT_FIELDS = {
    "msg": "message", "message": "message",
    "level": "level", "lvl": "level", "severity": "level",
    "ts": "timestamp", "time": "timestamp", "timestamp": "timestamp",
    "service": "service", "trace_id": "trace_id", "span_id": "span_id", "user_id": "user_id",
    "request_id": "request_id", "stack_trace": "stack_trace",
}  # fmt: skip
_JSON_ALIASES = (("msg", "message"), ("time", "timestamp"), ("ts", "timestamp"), ("@timestamp", "timestamp"),
                 ("lvl", "level"), ("severity", "level"))  # fmt: skip


def _unquote_logfmt(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _LOGFMT_ESCAPES.get(m.group(1), m.group(0)), s)


def _timestamp_or(text: str, default: int) -> int:
    try:
        return parse_timestamp(text)
    except ValueError:
        return default


def _from_json_line(line: str, received_ns: int) -> LogRecord | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    for alias, name in _JSON_ALIASES:
        if name not in obj and alias in obj:
            obj[name] = obj.pop(alias)
    try:
        return record_from_json(obj, received_ns=received_ns)
    except ValidationError:
        return None


def _level_service_message(rest: str, word_re: re.Pattern[str]) -> tuple[str | None, str, str]:
    """Split '[LEVEL] [service] message' off the front of rest; the level is None when absent."""
    level = None
    m = word_re.match(rest)
    if m is not None and is_level_word(m["level"] or m["blevel"]):
        level = normalize_level(m["level"] or m["blevel"])
        rest = rest[m.end() :]
    service = ""
    m = _SERVICE.match(rest)
    if m is not None:
        service = m["service"]
        rest = rest[m.end() :]
    return level, service, rest


def _from_prefixed(line: str, received_ns: int) -> LogRecord | None:
    m = _TS_PREFIX.match(line)
    if m is None:
        return None
    ts = _timestamp_or(m["ts"] or m["bts"], received_ns)
    level, service, message = _level_service_message(line[m.end() :], _LEVEL_WORD)
    return LogRecord(ts=ts, level=level or "UNKNOWN", service=service, message=message or line)


def _from_logfmt(line: str, received_ns: int) -> LogRecord | None:
    pos, n = 0, len(line)
    pairs: list[tuple[str, str]] = []
    while pos < n:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _LOGFMT_PAIR.match(line, pos)
        if m is None:
            return None
        value = _unquote_logfmt(m[2]) if m[2] is not None else m[3]
        pairs.append((m[1], value))
        pos = m.end()
    keys = {k for k, _ in pairs}
    if not keys & {"msg", "message", "level", "lvl"}:
        return None
    fields: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    for k, v in pairs:
        name = _LOGFMT_FIELDS.get(k)
        if name is not None and name not in fields:
            fields[name] = v
        elif len(attributes) < MAX_ATTRIBUTES and len(k) <= MAX_ATTRIBUTE_KEY_CHARS:
            attributes[k] = v
    ts = _timestamp_or(fields.pop("timestamp"), received_ns) if "timestamp" in fields else received_ns
    level = normalize_level(fields.pop("level", ""))
    message = fields.pop("message", None)
    rec = LogRecord(ts=ts, level=level, message=message or line, attributes=attributes)
    for k, v in fields.items():
        if len(v) <= MAX_FIELD_CHARS or k == "stack_trace":
            setattr(rec, k, v)
    return rec


def _from_level_first(line: str, received_ns: int) -> LogRecord | None:
    level, service, message = _level_service_message(line, _UPPER_LEVEL_WORD)
    if level is None or not message:
        return None
    return LogRecord(ts=received_ns, level=level, service=service, message=message)


def parse_line(line: str, *, received_ns: int) -> LogRecord:
    """One plain-text line to a record. Never refuses a line for its shape; raises ValidationError
    only for a line over 64 KiB."""
    line = line.rstrip("\r\n")
    _check_message(line, "body", None)
    stripped = line.strip()
    if stripped.startswith("{"):
        rec = _from_json_line(stripped, received_ns)
        if rec is not None:
            return rec
    if stripped[:1].isdigit() or (stripped[:1] == "[" and stripped[1:2].isdigit()):
        rec = _from_prefixed(stripped, received_ns)
        if rec is not None:
            return rec
    if "=" in stripped:
        rec = _from_logfmt(stripped, received_ns)
        if rec is not None:
            return rec
    rec = _from_level_first(stripped, received_ns)
    if rec is not None:
        return rec
    return LogRecord(ts=received_ns, level="UNKNOWN", message=line)


def parse_plain_body(text: str, *, received_ns: int) -> list[LogRecord]:
    """Split a text/plain body into lines (blank ones skipped) and parse each. A refused line is
    reported with its 1-based line number."""
    out = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append(parse_line(line, received_ns=received_ns))
        except ValidationError as exc:
            details = {"field": "body", "line": lineno}
            raise ValidationError(f"line {lineno}: {exc.message}", details=details) from None
    return out

