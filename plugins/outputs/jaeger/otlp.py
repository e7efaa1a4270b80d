"""Our spans as an OTLP ``ExportTraceServiceRequest`` (protobuf), the reverse of
:mod:`airisd.otlp_traces`: decoding what this module encodes gives the spans back.

- spans are grouped into one ResourceSpans per (service, ``resource.*`` tags), with
  ``service.name`` and those tags (prefix removed) as resource attributes, then into one
  ScopeSpans per (``otel.scope.name``, ``otel.scope.version``) tags;
- the error flag becomes status ERROR (what Jaeger and Phoenix show as a failed span), else an
  ``otel.status_code`` tag of ``OK`` becomes status OK; ``otel.status_description`` becomes
  the status message. So an error span without an ``otel.status_code`` tag comes back with
  ``otel.status_code=ERROR`` added: :func:`normalized` is that one difference;
- other tags become attributes of their own type (string, int, double, bool); logs become
  events (message as the event name, fields as attributes); kind maps to SpanKind.

Ids: OTLP wants 16-byte trace ids and 8-byte span ids, ours are any 1-64 characters of
``[A-Za-z0-9_-]`` (the seed's ``abc123def456ghi789``). An id already in OTLP's form (lower-case
hex of the right length, not all zeros) is sent as is; a 16-hex-digit trace id is zero-padded
(Jaeger's own reading of 64-bit ids); any other id is sent as a BLAKE2b digest of its text and
kept verbatim in an ``airisd.trace_id`` / ``airisd.span_id`` / ``airisd.parent_span_id``
attribute. The digest is a pure function of the id, so parents still point at their parent and
the query store can find a trace by the id the user knows (:func:`wire_trace_id`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from airisd.model import Span
from airisd.traceformats import RESOURCE_PREFIX

ORIGINAL_TRACE_ID = "airisd.trace_id"
ORIGINAL_SPAN_ID = "airisd.span_id"
ORIGINAL_PARENT_ID = "airisd.parent_span_id"
ORIGINAL_ID_TAGS = (ORIGINAL_TRACE_ID, ORIGINAL_SPAN_ID, ORIGINAL_PARENT_ID)
SCOPE_NAME = "otel.scope.name"
SCOPE_VERSION = "otel.scope.version"
STATUS_CODE = "otel.status_code"
STATUS_DESCRIPTION = "otel.status_description"
_KIND = {"": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_HEX_RE = re.compile("[0-9a-f]+")
_SERVICE_KEY = RESOURCE_PREFIX + "service.name"  # would collide with the service: stays an attribute
_SPECIAL_PREFIXES = (RESOURCE_PREFIX, "otel.scope.")


def _is_hex(text: str, size: int) -> bool:
    return len(text) == 2 * size and _HEX_RE.fullmatch(text) is not None and text.strip("0") != ""


def _digest(text: str, size: int) -> bytes:
    raw = hashlib.blake2b(text.encode(), digest_size=size, person=b"airisd-id").digest()
    return raw if any(raw) else b"\x01" * size


def wire_trace_id(trace_id: str) -> bytes:
    """The 16 bytes a trace id is sent as."""
    if _is_hex(trace_id, 16):
        return bytes.fromhex(trace_id)
    if _is_hex(trace_id, 8):
        return bytes(8) + bytes.fromhex(trace_id)
    return _digest(trace_id, 16)


def wire_span_id(span_id: str) -> bytes:
    """The 8 bytes a span id is sent as."""
    return bytes.fromhex(span_id) if _is_hex(span_id, 8) else _digest(span_id, 8)


def _set_value(kv: KeyValue, value: Any) -> None:
    kind = type(value)
    if kind is str:
        kv.value.string_value = value
    elif kind is bool:
        kv.value.bool_value = value
    elif kind is int:
        kv.value.int_value = value
    elif kind is float:
        kv.value.double_value = value
    elif isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


def _add_attributes(target: Any, items: Iterable[tuple[str, Any]]) -> None:
    for key, value in items:
        kv = target.add()
        kv.key = key
        _set_value(kv, value)


def _split_tags(span: Span) -> tuple[tuple[tuple[str, Any], ...], tuple[str, str], list[tuple[str, Any]]]:
    """(resource attributes, scope (name, version), span attributes) of a span's tags."""
    resource: list[tuple[str, Any]] = []
    attrs: list[tuple[str, Any]] = []
    name = version = ""
    for key, value in span.tags.items():
        if not key.startswith(_SPECIAL_PREFIXES):
            attrs.append((key, value))
        elif key.startswith(RESOURCE_PREFIX) and len(key) > len(RESOURCE_PREFIX) and key != _SERVICE_KEY:
            resource.append((key[len(RESOURCE_PREFIX):], value))
        elif key == SCOPE_NAME and isinstance(value, str) and value:
            name = value
        elif key == SCOPE_VERSION and isinstance(value, str) and value:
            version = value
        else:
            attrs.append((key, value))
    return tuple(resource), (name, version), attrs


def _status(span: Span, attrs: list[tuple[str, Any]]) -> tuple[int, str, list[tuple[str, Any]]]:
    """(status code, message, the attributes left) for a span."""
    tag = span.tags.get(STATUS_CODE)
    code = 2 if span.error else 1 if tag == "OK" else 2 if tag == "ERROR" else 0
    if code == 0:
        return 0, "", attrs
    message = span.tags.get(STATUS_DESCRIPTION)
    if tag is None and message is None:
        return code, "", attrs
    if isinstance(message, str) and message:
        return code, message, [(k, v) for k, v in attrs if k not in (STATUS_CODE, STATUS_DESCRIPTION)]
    return code, "", [(k, v) for k, v in attrs if k != STATUS_CODE]


def _id_attrs(span: Span) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if not _is_hex(span.trace_id, 16):
        out.append((ORIGINAL_TRACE_ID, span.trace_id))
    if not _is_hex(span.span_id, 8):
        out.append((ORIGINAL_SPAN_ID, span.span_id))
    if span.parent_span_id and not _is_hex(span.parent_span_id, 8):
        out.append((ORIGINAL_PARENT_ID, span.parent_span_id))
    return out


def encode_request(spans: Iterable[Span]) -> ExportTraceServiceRequest:
    """One ExportTraceServiceRequest holding every span, grouped by resource and scope."""
    request = ExportTraceServiceRequest()
    resources: dict[tuple[str, tuple[tuple[str, Any], ...]], ResourceSpans] = {}
    scopes: dict[tuple[int, tuple[str, str]], Any] = {}
    for span in spans:
        resource, scope, attrs = _split_tags(span)
        rkey = (span.service_name, resource)
        rs = resources.get(rkey)
        if rs is None:
            rs = resources[rkey] = request.resource_spans.add()
            _add_attributes(rs.resource.attributes, (("service.name", span.service_name), *resource))
        skey = (id(rs), scope)
        ss = scopes.get(skey)
        if ss is None:
            ss = scopes[skey] = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = scope
        code, message, attrs = _status(span, attrs)
        sp = ss.spans.add()
        sp.trace_id = wire_trace_id(span.trace_id)
        sp.span_id = wire_span_id(span.span_id)
        if span.parent_span_id:
            sp.parent_span_id = wire_span_id(span.parent_span_id)
        sp.name = span.operation_name
        sp.kind = _KIND.get(span.kind, 0)  # type: ignore[assignment]
        sp.start_time_unix_nano = span.start_ts
        sp.end_time_unix_nano = span.end_ts
        _add_attributes(sp.attributes, attrs)
        _add_attributes(sp.attributes, _id_attrs(span))
        if code:
            sp.status.code = code  # type: ignore[assignment]
            if message:
                sp.status.message = message
        for log in span.logs:
            ev = sp.events.add()
            ev.time_unix_nano = log.ts
            ev.name = log.message
            _add_attributes(ev.attributes, log.fields.items())
    return request


def encode_spans(spans: Iterable[Span]) -> bytes:
    """The request body for ``POST /v1/traces`` (``application/x-protobuf``)."""
    return encode_request(spans).SerializeToString()


def normalized(span: Span) -> Span:
    """The span as an OTLP receiver sees it (see the module docstring): an error span carries
    ``otel.status_code=ERROR``; a status description without a status code stays a plain tag."""
    if not span.error or span.tags.get(STATUS_CODE) == "ERROR":
        return span
    return msgspec.structs.replace(span, tags={**span.tags, STATUS_CODE: "ERROR"})
