"""OTLP/HTTP traces (``POST /v1/traces``): decode ExportTraceServiceRequest bodies into Spans and
build the spec's responses.

Both encodings are accepted: ``application/x-protobuf`` (decoded with the generated classes of
the ``opentelemetry-proto`` package; valid spans through a fast path, see _decode_protobuf_fast)
and ``application/json`` (OTLP's JSON mapping: lowerCamelCase keys, ids as case-insensitive hex,
64-bit integers as strings or numbers, enums as ints or names; decoded by hand, so errors can
name the path).

Mapping to :class:`~airisd.model.Span`:

- resource attribute ``service.name`` → ``service_name`` (``unknown_service`` when absent); the
  other resource attributes are kept as tags named ``resource.<key>`` (so they never collide with
  span attributes, and the Jaeger rendering turns them back into process tags);
- scope name/version → tags ``otel.scope.name`` / ``otel.scope.version``;
- span attributes → tags; arrays and key/value lists become JSON strings, bytes base64 strings,
  non-finite doubles the strings ``NaN`` / ``Infinity`` / ``-Infinity``;
- events → logs (event name as the message); status → tags ``otel.status_code`` (``OK`` or
  ``ERROR``) and ``otel.status_description``; status ERROR (or the general rule in
  :func:`airisd.traceformats.is_error`) sets ``error``; kind → ``kind``; links are dropped.

Errors: a body that does not parse, or whose structure is wrong, raises :class:`OtlpDecodeError`
(the HTTP layer answers 400 with :func:`otlp_error_response`). A well-formed span that breaks a
rule (id length, end before start, limits) is rejected alone: :func:`decode_otlp_traces_partial`
counts it for the partial-success response, :func:`decode_otlp_traces` raises instead.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from airisd.errors import UnsupportedMediaType, ValidationError
from airisd.model import Span, SpanLog
from airisd.timeparse import MAX_TS_NS
from airisd.traceformats import (
    MAX_KEY_LEN,
    MAX_LOG_FIELDS,
    MAX_LOGS,
    MAX_OPERATION_LEN,
    MAX_SERVICE_LEN,
    MAX_TAGS,
    MAX_VALUE_LEN,
    RESOURCE_PREFIX,
    _fields_ok,
    decoded_span_ok,
    is_error,
    validate_span,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
UNKNOWN_SERVICE = "unknown_service"
_KINDS = ("", "internal", "server", "client", "producer", "consumer")
_KIND_NAMES = {f"SPAN_KIND_{k.upper()}": i for i, k in enumerate(_KINDS) if k} | {"SPAN_KIND_UNSPECIFIED": 0}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_STATUS_TAG = {1: "OK", 2: "ERROR"}
# resource + scope + status tags on top of MAX_TAGS span attributes and MAX_TAGS resource ones
_MAX_ALL_TAGS = 2 * MAX_TAGS + 8


class OtlpDecodeError(ValidationError):
    """The request body is not a valid ExportTraceServiceRequest (answer 400, OTLP Status)."""


@dataclass
class OtlpBatch:
    """Decoded spans, and how many were rejected and why (for partial success)."""

    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    message: str = ""


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` → ``application/json``; 415 for anything else."""
    mt = content_type.split(";", 1)[0].strip().lower()
    if mt in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if mt == JSON:
        return JSON
    raise UnsupportedMediaType(
        f"OTLP/HTTP takes {PROTOBUF} or {JSON}, not {content_type[:80]!r}",
        details={"field": "content-type"},
    )


def decode_otlp_traces(body: bytes, content_type: str) -> list[Span]:
    """Every span of the request, or OtlpDecodeError if the body or any span is invalid."""
    batch = decode_otlp_traces_partial(body, content_type)
    if batch.rejected:
        raise OtlpDecodeError(batch.message, details={"field": "spans", "rejected": batch.rejected})
    return batch.spans


def decode_otlp_traces_partial(body: bytes, content_type: str) -> OtlpBatch:
    """The valid spans of the request; invalid spans are counted, the first reason kept."""
    if media_type(content_type) == PROTOBUF:
        return _decode_protobuf(body)
    return _decode_json(body)


# -- building one span (both encodings end here) ------------------------------------------------


class _Builder:
    """Collects spans and rejections for one request."""

    def __init__(self, *, trusted_text: bool = False) -> None:
        self.batch = OtlpBatch()
        self.trusted_text = trusted_text  # protobuf: the parser has checked UTF-8 and integer sizes

    def reject(self, where: str, reason: str) -> None:
        self.batch.rejected += 1
        if not self.batch.message:
            self.batch.message = f"{where}: {reason}"

    def add(
        self,
        where: str,
        *,
        trace_id: bytes | str,
        span_id: bytes | str,
        parent_id: bytes | str,
        name: str,
        kind: int,
        start: int,
        end: int,
        attrs: dict[str, Any],
        status: int,
        status_message: str,
        events: list[SpanLog],
        service: str,
        base_tags: dict[str, Any],
    ) -> None:
        tid, sid, pid = _hex_id(trace_id, 16), _hex_id(span_id, 8), _hex_id(parent_id, 8, optional=True)
        if tid is None:
            return self.reject(where, "traceId must be 16 bytes, not all zero")
        if sid is None:
            return self.reject(where, "spanId must be 8 bytes, not all zero")
        if pid is None:
            return self.reject(where, "parentSpanId must be empty or 8 bytes")
        if len(attrs) > MAX_TAGS:
            return self.reject(where, f"at most {MAX_TAGS} attributes per span")
        if len(events) > MAX_LOGS:
            return self.reject(where, f"at most {MAX_LOGS} events per span")
        if not 0 <= kind < len(_KINDS):
            return self.reject(where, f"unknown span kind {kind}")
        tags = {**base_tags, **attrs}
        if status in _STATUS_TAG:
            tags["otel.status_code"] = _STATUS_TAG[status]
            if status_message:
                tags["otel.status_description"] = status_message
        span = Span(
            trace_id=tid,
            span_id=sid,
            parent_span_id=pid,
            operation_name=name,
            service_name=service,
            start_ts=start,
            end_ts=end,
            kind=_KINDS[kind],
            error=status == 2 or is_error(tags),
            tags=tags,
            logs=events,
        )
        if not (self.trusted_text and decoded_span_ok(span, max_tags=_MAX_ALL_TAGS)):
            try:
                validate_span(span, max_tags=_MAX_ALL_TAGS)
            except ValidationError as exc:
                return self.reject(where, exc.message)
        self.batch.spans.append(span)


def _hex_id(raw: bytes | str, size: int, *, optional: bool = False) -> str | None:
    """Lower-case hex of a binary id (protobuf) or a hex string (JSON); None if invalid."""
    if isinstance(raw, str):
        if optional and raw == "":
            return ""
        try:
            raw = bytes.fromhex(raw)
        except ValueError:
            return None
    if optional and not raw:
        return ""
    if len(raw) != size or not any(raw):
        return None
    return raw.hex()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _float_tag(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# -- protobuf ---------------------------------------------------------------------------------


def _pb_plain(v: Any) -> Any:
    """An AnyValue as a plain Python value (nested values stay lists/dicts)."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "bool_value":
        return v.bool_value
    if which == "double_value":
        return _float_tag(v.double_value)
    if which == "array_value":
        return [_pb_plain(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_plain(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _pb_attrs(attributes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in attributes[:]:  # a list: iterating upb's container ends in a costly IndexError
        value = _pb_plain(kv.value)
        if value is None:
            continue
        out[kv.key] = _json_text(value) if isinstance(value, list | dict) else value
    return out


def _decode_protobuf(body: bytes) -> OtlpBatch:
    """The fast path as far as every span is valid (the usual body: all of it); from the first span
    it cannot vouch for, the general walk, which counts and names what is wrong."""
    spans, resume = _decode_protobuf_fast(body)
    if resume is None:
        return OtlpBatch(spans)
    return _decode_protobuf_general(body, resume, spans)


# (resource, scope, span) index where the general walk takes over
_Position = tuple[int, int, int]


def _decode_protobuf_general(body: bytes, start: _Position = (0, 0, 0), done: list[Span] | None = None) -> OtlpBatch:
    """The reference walk: every rule checked per span, rejections counted and named. From start
    on, after the spans done before it (which the fast path built, all valid)."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    b = _Builder(trusted_text=True)
    if done:
        b.batch.spans.extend(done)
    r0, s0, p0 = start
    for ri, rs in enumerate(request.resource_spans[r0:], r0):
        res = _pb_attrs(rs.resource.attributes)
        service, base = _resource_tags(res)
        s_from = s0 if ri == r0 else 0
        for si, ss in enumerate(rs.scope_spans[s_from:], s_from):
            scope = _scope_tags(ss.scope.name, ss.scope.version)
            tags = {**base, **scope} if scope else base
            p_from = p0 if (ri, si) == (r0, s0) else 0
            for pi, sp in enumerate(ss.spans[p_from:], p_from):
                where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
                events = [
                    SpanLog(ts=e.time_unix_nano, message=e.name, fields=_pb_attrs(e.attributes))
                    for e in sp.events
                ]
                b.add(
                    where,
                    trace_id=sp.trace_id,
                    span_id=sp.span_id,
                    parent_id=sp.parent_span_id,
                    name=sp.name,
                    kind=sp.kind,
                    start=sp.start_time_unix_nano,
                    end=sp.end_time_unix_nano,
                    attrs=_pb_attrs(sp.attributes),
                    status=sp.status.code,
                    status_message=sp.status.message,
                    events=events,
                    service=service,
                    base_tags=tags,
                )
    return b.batch


def _lazy_classes() -> tuple[Any, Any]:
    """ExportTraceServiceRequest as a twin schema whose Span.attributes are ``repeated bytes``:
    the same wire format (an embedded message is length-delimited bytes), but each KeyValue comes
    out as its encoded bytes, which the fast path looks up in a cache instead of reading through
    four upb wrappers (that was about 1 µs of 2-3 per attribute). Everything else keeps its real
    type, so the parser checks it as before. A private pool: nothing global is changed."""
    pool = descriptor_pool.DescriptorPool()
    for mod in (common_pb2, resource_pb2, trace_pb2):
        pool.AddSerializedFile(mod.DESCRIPTOR.serialized_pb)
    pkg = "airisd.otlp_lazy"

    def twin(desc: Any, name: str, retype: dict[str, str | None]) -> descriptor_pb2.DescriptorProto:
        proto = descriptor_pb2.DescriptorProto()
        desc.CopyToProto(proto)
        proto.name = name
        del proto.nested_type[:]  # references keep pointing at the real nested types
        del proto.enum_type[:]
        for f in proto.field:
            if f.name in retype:
                target = retype[f.name]
                if target is None:
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.ClearField("type_name")
                else:
                    f.type_name = f".{pkg}.{target}"
        return proto

    file = descriptor_pb2.FileDescriptorProto(name="airisd/otlp_lazy.proto", package=pkg, syntax="proto3")
    file.dependency.append(trace_pb2.DESCRIPTOR.name)
    file.message_type.extend([
        twin(ExportTraceServiceRequest.DESCRIPTOR, "Request", {"resource_spans": "ResourceSpans"}),
        twin(trace_pb2.ResourceSpans.DESCRIPTOR, "ResourceSpans", {"scope_spans": "ScopeSpans"}),
        twin(trace_pb2.ScopeSpans.DESCRIPTOR, "ScopeSpans", {"spans": "Span"}),
        twin(trace_pb2.Span.DESCRIPTOR, "Span", {"attributes": None}),
    ])  # fmt: skip
    pool.Add(file)
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName(pkg + ".Request"))
    key_value = message_factory.GetMessageClass(pool.FindMessageTypeByName("opentelemetry.proto.common.v1.KeyValue"))
    return request, key_value


_LazyRequest, _LazyKeyValue = _lazy_classes()
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
# Encoded KeyValue -> (key, value), value None for an attribute without one. SDKs repeat the same
# few attributes (http.method=GET, ...) span after span. Bounded: entries up to _ATTR_CACHE_BYTES
# long, cleared when full (a cheap refill of the hot ones, unlike an LRU's bookkeeping per hit).
_ATTR_CACHE: dict[bytes, tuple[str, Any]] = {}
_ATTR_CACHE_MAX = 4096
_ATTR_CACHE_BYTES = 256
# upb refuses messages nested deeper than 100; a span attribute sits 6 levels down and each array
# or key/value list adds 2, so the whole body fails from ~47 levels of arrays. Deeper than this
# goes to the general path, which parses the body as a whole.
_MAX_LAZY_DEPTH = 16


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _lazy_attr(raw: bytes, kv: Any) -> tuple[str, Any] | None:
    """A span attribute from its encoding, parsed into kv (a KeyValue reused for the body: a new
    message per attribute cost more than the parse); None if it does not parse or breaks a limit
    (the general path then gives the answer, an error naming the rule)."""
    try:
        kv.ParseFromString(raw)
    except DecodeError:
        return None
    key = kv.key
    value = _pb_plain(kv.value)
    if isinstance(value, list | dict):
        # Parsed alone, a deep value escapes the parser's nesting limit that the whole body hits.
        if _depth(value) > _MAX_LAZY_DEPTH:
            return None
        value = _json_text(value)
    if not key or len(key) > MAX_KEY_LEN or (type(value) is str and len(value) > MAX_VALUE_LEN):
        return None
    entry = (key, value)
    if len(raw) <= _ATTR_CACHE_BYTES:
        if len(_ATTR_CACHE) >= _ATTR_CACHE_MAX:
            _ATTR_CACHE.clear()
        _ATTR_CACHE[raw] = entry
    return entry


def _decode_protobuf_fast(body: bytes) -> tuple[list[Span], _Position | None]:
    """The spans _decode_protobuf_general would return, in one pass without a call per value (this
    walk was about half of the daemon's CPU per span), up to the first span it cannot vouch for
    (one that breaks a rule, or anything unusual): those spans, and where the general walk must
    take over (None: nowhere, every span was built). Cheap checks stand in for decoded_span_ok and
    validate_span: the parser has checked UTF-8 and integer sizes, the ids are hex written here."""
    request = _LazyRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        return [], (0, 0, 0)  # the general walk's parse raises the error, naming the real type
    spans: list[Span] = []
    append = spans.append
    cache_get = _ATTR_CACHE.get
    scratch = _LazyKeyValue()
    for ri, rs in enumerate(request.resource_spans):
        res = _pb_attrs(rs.resource.attributes)
        name = res.pop("service.name", None)
        service = name if isinstance(name, str) and name else UNKNOWN_SERVICE
        if len(res) > MAX_TAGS or len(service) > MAX_SERVICE_LEN:
            return spans, (ri, 0, 0)
        base = {RESOURCE_PREFIX + k: v for k, v in res.items()}  # as _resource_tags
        for si, ss in enumerate(rs.scope_spans):
            scope = _scope_tags(ss.scope.name, ss.scope.version)
            shared = {**base, **scope} if scope else base
            first = len(spans)  # the scope's spans[i] is spans[first + i] until one fails
            if not _fields_ok(shared):
                return spans, (ri, si, 0)
            for sp in ss.spans[:]:
                tid = sp.trace_id
                sid = sp.span_id
                pid = sp.parent_span_id
                if len(tid) != 16 or tid == _ZERO_TRACE_ID or len(sid) != 8 or sid == _ZERO_SPAN_ID:
                    return spans, (ri, si, len(spans) - first)
                if pid and (len(pid) != 8 or pid in (_ZERO_SPAN_ID, sid)):
                    return spans, (ri, si, len(spans) - first)
                op = sp.name
                kind = sp.kind
                start = sp.start_time_unix_nano
                end = sp.end_time_unix_nano
                attributes = sp.attributes[:]  # a list: iterating upb's container ends in a costly IndexError
                # The raw count bounds the distinct keys; with shared (<= MAX_TAGS + 2) and the two
                # status tags the total stays under _MAX_ALL_TAGS.
                if not 0 <= kind < 6 or len(op) > MAX_OPERATION_LEN or end > MAX_TS_NS or end < start \
                        or len(attributes) > MAX_TAGS:
                    return spans, (ri, si, len(spans) - first)
                tags = shared.copy()  # = {**shared, **attrs}: a shared key keeps its place, takes the new value
                for raw in attributes:
                    entry = cache_get(raw) or _lazy_attr(raw, scratch)
                    if entry is None:
                        return spans, (ri, si, len(spans) - first)
                    key, value = entry
                    if value is not None:
                        tags[key] = value
                events = sp.events
                logs: list[SpanLog] = []
                if events:
                    if len(events) > MAX_LOGS:
                        return spans, (ri, si, len(spans) - first)
                    for e in events[:]:
                        fields = _pb_attrs(e.attributes)
                        log = SpanLog(ts=e.time_unix_nano, message=e.name, fields=fields)
                        if log.ts > MAX_TS_NS or len(log.message) > MAX_VALUE_LEN or len(fields) > MAX_LOG_FIELDS \
                                or not _fields_ok(fields):
                            return spans, (ri, si, len(spans) - first)
                        logs.append(log)
                status = sp.status
                code = status.code
                if code == 1 or code == 2:
                    tags["otel.status_code"] = _STATUS_TAG[code]
                    message = status.message
                    if message:
                        if len(message) > MAX_VALUE_LEN:
                            return spans, (ri, si, len(spans) - first)
                        tags["otel.status_description"] = message
                append(Span(
                    trace_id=tid.hex(),
                    span_id=sid.hex(),
                    parent_span_id=pid.hex(),
                    operation_name=op,
                    service_name=service,
                    start_ts=start,
                    end_ts=end,
                    kind=_KINDS[kind],
                    # is_error only when one of its keys is there
                    error=code == 2 or (("http.status_code" in tags or "error" in tags or "otel.status_code" in tags
                                         or "http.response.status_code" in tags) and is_error(tags)),
                    tags=tags,
                    logs=logs,
                ))  # fmt: skip
    return spans, None


def _resource_tags(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = res.pop("service.name", None)
    service = name if isinstance(name, str) and name else UNKNOWN_SERVICE
    if len(res) > MAX_TAGS:
        raise OtlpDecodeError(f"at most {MAX_TAGS} resource attributes", details={"field": "resource"})
    return service, {RESOURCE_PREFIX + k: v for k, v in res.items()}


def _scope_tags(name: str, version: str) -> dict[str, Any]:
    tags = {}
    if name:
        tags["otel.scope.name"] = name
    if version:
        tags["otel.scope.version"] = version
    return tags


# -- JSON -------------------------------------------------------------------------------------


class _Bad(Exception):
    """Structural error inside the JSON walk; becomes OtlpDecodeError naming the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(path, "must be an object")
    return value


def _arr(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(path, "must be an array")
    return value


def _str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(path, "must be a string")
    return value


def _int(value: Any, path: str, *, names: dict[str, int] | None = None) -> int:
    """An int64 as JSON number or string (or an enum by name)."""
    if value is None:
        return 0
    if isinstance(value, str):
        if names is not None and value in names:
            return names[value]
        text = value.strip()
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Bad(path, "must be an integer")


def _json_plain(v: Any, path: str) -> Any:
    v = _obj(v, path)
    if "stringValue" in v:
        return _str(v["stringValue"], path + ".stringValue")
    if "intValue" in v:
        return _int(v["intValue"], path + ".intValue")
    if "boolValue" in v:
        if not isinstance(v["boolValue"], bool):
            raise _Bad(path + ".boolValue", "must be a boolean")
        return v["boolValue"]
    if "doubleValue" in v:
        d = v["doubleValue"]
        if isinstance(d, str) and d in ("NaN", "Infinity", "-Infinity"):
            return d
        if isinstance(d, bool) or not isinstance(d, int | float):
            raise _Bad(path + ".doubleValue", "must be a number")
        return float(d)
    if "arrayValue" in v:
        values = _arr(_obj(v["arrayValue"], path + ".arrayValue").get("values"), path + ".arrayValue.values")
        return [_json_plain(x, f"{path}.arrayValue.values[{i}]") for i, x in enumerate(values)]
    if "kvlistValue" in v:
        kvs = _arr(_obj(v["kvlistValue"], path + ".kvlistValue").get("values"), path + ".kvlistValue.values")
        return _json_kvs(kvs, path + ".kvlistValue.values", flatten=False)
    if "bytesValue" in v:
        return _str(v["bytesValue"], path + ".bytesValue")
    return None


def _json_kvs(kvs: list[Any], path: str, *, flatten: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, kv in enumerate(kvs):
        kv = _obj(kv, f"{path}[{i}]")
        key = _str(kv.get("key"), f"{path}[{i}].key")
        value = _json_plain(kv.get("value"), f"{path}[{i}].value")
        if value is None:
            continue
        out[key] = _json_text(value) if flatten and isinstance(value, list | dict) else value
    return out


def _decode_json(body: bytes) -> OtlpBatch:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"body is not valid JSON: {exc}") from None
    try:
        return _walk_json(_obj(data, "body"))
    except _Bad as exc:
        raise OtlpDecodeError(str(exc), details={"field": exc.path}) from None


def _walk_json(data: dict[str, Any]) -> OtlpBatch:
    b = _Builder()
    for ri, rs in enumerate(_arr(data.get("resourceSpans"), "resourceSpans")):
        rp = f"resourceSpans[{ri}]"
        rs = _obj(rs, rp)
        resource = _obj(rs.get("resource"), rp + ".resource")
        res = _json_kvs(
            _arr(resource.get("attributes"), rp + ".resource.attributes"), rp + ".resource.attributes"
        )
        try:
            service, base = _resource_tags(res)
        except OtlpDecodeError as exc:
            raise _Bad(rp + ".resource", exc.message) from None
        for si, ss in enumerate(_arr(rs.get("scopeSpans"), rp + ".scopeSpans")):
            sp_path = f"{rp}.scopeSpans[{si}]"
            ss = _obj(ss, sp_path)
            scope = _obj(ss.get("scope"), sp_path + ".scope")
            stags = _scope_tags(
                _str(scope.get("name"), sp_path + ".scope.name"),
                _str(scope.get("version"), sp_path + ".scope.version"),
            )
            tags = {**base, **stags} if stags else base
            for pi, sp in enumerate(_arr(ss.get("spans"), sp_path + ".spans")):
                p = f"{sp_path}.spans[{pi}]"
                sp = _obj(sp, p)
                status = _obj(sp.get("status"), p + ".status")
                events = []
                for ei, ev in enumerate(_arr(sp.get("events"), p + ".events")):
                    ep = f"{p}.events[{ei}]"
                    ev = _obj(ev, ep)
                    events.append(
                        SpanLog(
                            ts=_int(ev.get("timeUnixNano"), ep + ".timeUnixNano"),
                            message=_str(ev.get("name"), ep + ".name"),
                            fields=_json_kvs(
                                _arr(ev.get("attributes"), ep + ".attributes"), ep + ".attributes"
                            ),
                        )
                    )
                b.add(
                    p,
                    trace_id=_str(sp.get("traceId"), p + ".traceId"),
                    span_id=_str(sp.get("spanId"), p + ".spanId"),
                    parent_id=_str(sp.get("parentSpanId"), p + ".parentSpanId"),
                    name=_str(sp.get("name"), p + ".name"),
                    kind=_int(sp.get("kind"), p + ".kind", names=_KIND_NAMES),
                    start=_int(sp.get("startTimeUnixNano"), p + ".startTimeUnixNano"),
                    end=_int(sp.get("endTimeUnixNano"), p + ".endTimeUnixNano"),
                    attrs=_json_kvs(_arr(sp.get("attributes"), p + ".attributes"), p + ".attributes"),
                    status=_int(status.get("code"), p + ".status.code", names=_STATUS_NAMES),
                    status_message=_str(status.get("message"), p + ".status.message"),
                    events=events,
                    service=service,
                    base_tags=tags,
                )
    return b.batch


# -- responses --------------------------------------------------------------------------------


def otlp_success_response(rejected: int = 0, message: str = "", content_type: str = PROTOBUF) -> bytes:
    """ExportTraceServiceResponse for a 200: ``partial_success`` set only when something was
    rejected or there is a message, as the spec asks; encoded like the request."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    if media_type(content_type) == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def otlp_error_response(message: str, content_type: str = PROTOBUF, *, code: int = 3) -> bytes:
    """A ``google.rpc.Status`` body for a 4xx/5xx answer (code 3 = INVALID_ARGUMENT), encoded
    like the request; hand-encoded to avoid a dependency on googleapis-common-protos."""
    try:
        mt = media_type(content_type)
    except UnsupportedMediaType:
        mt = JSON
    if mt == JSON:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
