"""OTLP/HTTP trace decoding, checked against what the real OpenTelemetry SDK sends: spans are
built with the SDK and encoded by its OTLP exporter's own encoder."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from airisd.errors import UnsupportedMediaType, ValidationError
from airisd.model import Span
from airisd.otlp_traces import (
    JSON,
    PROTOBUF,
    OtlpDecodeError,
    decode_otlp_traces,
    decode_otlp_traces_partial,
    otlp_error_response,
    otlp_success_response,
)

T0 = 1_705_314_600_000_000_000


@pytest.fixture
def sdk_spans() -> Iterator[list[ReadableSpan]]:
    """A small trace from the SDK: server span, client child with an event, a failing child."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "user-api", "host.name": "h1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("airisd.tests", "1.2.3")
    with tracer.start_as_current_span("GET /api/users", kind=SpanKind.SERVER, start_time=T0) as root:
        root.set_attribute("http.method", "GET")
        root.set_attribute("http.status_code", 200)
        root.set_attribute("ratio", 0.25)
        root.set_attribute("retry", True)
        root.set_attribute("roles", ["admin", "ops"])
        with tracer.start_as_current_span("SELECT users", kind=SpanKind.CLIENT, start_time=T0 + 1000) as db:
            db.add_event("query sent", {"rows": 3}, timestamp=T0 + 2000)
            db.end(end_time=T0 + 5000)
        with tracer.start_as_current_span("cache", start_time=T0 + 6000) as cache:
            cache.set_status(Status(StatusCode.ERROR, "cache down"))
            cache.end(end_time=T0 + 7000)
        root.end(end_time=T0 + 250_000_000)
    yield list(exporter.get_finished_spans())
    provider.shutdown()


def protobuf_body(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def json_body(spans: list[ReadableSpan]) -> bytes:
    """OTLP/JSON as the spec defines it: the protobuf JSON mapping, but ids in hex."""
    doc = json_format.MessageToDict(encode_spans(spans))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        sp[key] = base64.b64decode(sp[key]).hex().upper()  # hex is case-insensitive
    return orjson.dumps(doc)


def by_name(spans: list[Span]) -> dict[str, Span]:
    return {s.operation_name: s for s in spans}


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sdk_spans_decode_to_the_seed_model(sdk_spans: list[ReadableSpan], encoding: str) -> None:
    if encoding == "protobuf":
        spans = decode_otlp_traces(protobuf_body(sdk_spans), PROTOBUF)
    else:
        spans = decode_otlp_traces(json_body(sdk_spans), "application/json; charset=utf-8")
    got = by_name(spans)
    assert set(got) == {"GET /api/users", "SELECT users", "cache"}
    sdk = {s.name: s for s in sdk_spans}
    root, db, cache = got["GET /api/users"], got["SELECT users"], got["cache"]
    ctx = sdk["GET /api/users"].get_span_context()
    assert ctx is not None
    assert root.trace_id == f"{ctx.trace_id:032x}" and root.span_id == f"{ctx.span_id:016x}"
    assert root.parent_span_id == "" and db.parent_span_id == root.span_id == cache.parent_span_id
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert {s.service_name for s in spans} == {"user-api"}
    assert (root.start_ts, root.end_ts) == (T0, T0 + 250_000_000)
    assert (root.kind, db.kind, cache.kind) == ("server", "client", "internal")
    assert root.tags["http.method"] == "GET" and root.tags["http.status_code"] == 200
    assert root.tags["ratio"] == 0.25 and root.tags["retry"] is True
    assert root.tags["roles"] == '["admin","ops"]'  # arrays flattened to JSON text
    assert root.tags["resource.host.name"] == "h1" and "resource.service.name" not in root.tags
    assert root.tags["resource.telemetry.sdk.language"] == "python"
    assert root.tags["otel.scope.name"] == "airisd.tests" and root.tags["otel.scope.version"] == "1.2.3"
    assert [(log.ts, log.message, log.fields) for log in db.logs] == [(T0 + 2000, "query sent", {"rows": 3})]
    assert cache.error is True and root.error is False and db.error is False
    assert cache.tags["otel.status_code"] == "ERROR" and cache.tags["otel.status_description"] == "cache down"


def test_both_encodings_decode_to_the_same_spans(sdk_spans: list[ReadableSpan]) -> None:
    a = decode_otlp_traces(protobuf_body(sdk_spans), PROTOBUF)
    b = decode_otlp_traces(json_body(sdk_spans), JSON)
    assert sorted(a, key=lambda s: s.span_id) == sorted(b, key=lambda s: s.span_id)


HAND_JSON: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "manual"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "",
                            "name": "POST /pay",
                            "kind": "SPAN_KIND_SERVER",
                            "startTimeUnixNano": "1705314600000000000",
                            "endTimeUnixNano": 1705314600500000000,
                            "attributes": [
                                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                                {"key": "big", "value": {"doubleValue": "Infinity"}},
                                {"key": "blob", "value": {"bytesValue": "AAE="}},
                                {
                                    "key": "kv",
                                    "value": {
                                        "kvlistValue": {"values": [{"key": "a", "value": {"intValue": 1}}]}
                                    },
                                },
                                {"key": "empty", "value": {}},
                            ],
                            "status": {"code": "STATUS_CODE_OK"},
                            "unknownField": "ignored",
                        }
                    ],
                }
            ],
        }
    ]
}


def test_hand_written_otlp_json() -> None:
    [span] = decode_otlp_traces(orjson.dumps(HAND_JSON), JSON)
    assert span.trace_id == "5b8efff798038103d269b633813fc60c" and span.span_id == "eee19b7ec3c1b174"
    assert (span.service_name, span.operation_name, span.kind) == ("checkout", "POST /pay", "server")
    assert span.duration_ns == 500_000_000
    assert span.tags["http.response.status_code"] == 503 and span.error is True  # 5xx, though status OK
    assert span.tags["big"] == "Infinity" and span.tags["blob"] == "AAE=" and span.tags["kv"] == '{"a":1}'
    assert "empty" not in span.tags and span.tags["otel.status_code"] == "OK"


def test_missing_service_name_is_unknown_service() -> None:
    doc = orjson.loads(orjson.dumps(HAND_JSON))
    doc["resourceSpans"][0]["resource"] = {}
    [span] = decode_otlp_traces(orjson.dumps(doc), JSON)
    assert span.service_name == "unknown_service"


def bad_span(**changes: Any) -> bytes:
    doc = orjson.loads(orjson.dumps(HAND_JSON))
    sp = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    good = dict(sp[0])
    sp[0].update(changes)
    sp.append(good)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"traceId": "abcd"}, "traceId"),
        ({"traceId": "0" * 32}, "traceId"),
        ({"traceId": "zz" * 16}, "traceId"),
        ({"spanId": ""}, "spanId"),
        ({"parentSpanId": "12"}, "parentSpanId"),
        ({"endTimeUnixNano": "1705314599000000000"}, "end_time"),
        ({"name": "x" * 600}, "operation_name"),
        ({"kind": 9}, "kind"),
    ],
)
def test_an_invalid_span_is_rejected_alone(changes: dict[str, Any], reason: str) -> None:
    batch = decode_otlp_traces_partial(bad_span(**changes), JSON)
    assert len(batch.spans) == 1 and batch.rejected == 1
    assert batch.message.startswith("resourceSpans[0].scopeSpans[0].spans[0]") and reason in batch.message
    with pytest.raises(OtlpDecodeError) as exc:
        decode_otlp_traces(bad_span(**changes), JSON)
    assert exc.value.details["rejected"] == 1


@pytest.mark.parametrize(
    ("body", "ctype", "field"),
    [
        (b"\xff\xff\xff", PROTOBUF, None),
        (b"{not json", JSON, None),
        (b"[]", JSON, "body"),
        (b'{"resourceSpans": {}}', JSON, "resourceSpans"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [5]}]}]}',
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0]",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": '
            b'[{"key": "a", "value": {"boolValue": 1}}]}]}]}]}',
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.boolValue",
        ),
    ],
)
def test_malformed_bodies_raise_otlp_decode_error(body: bytes, ctype: str, field: str | None) -> None:
    with pytest.raises(OtlpDecodeError) as exc:
        decode_otlp_traces_partial(body, ctype)
    assert isinstance(exc.value, ValidationError) and exc.value.message
    if field is not None:
        assert exc.value.details["field"] == field


def test_unsupported_content_type() -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_otlp_traces(b"", "text/plain")


def test_empty_request_is_no_spans() -> None:
    assert decode_otlp_traces(b"", PROTOBUF) == [] and decode_otlp_traces(b"{}", JSON) == []


def check_decoded_or_refused(body: bytes, ctype: str) -> None:
    """Any body either raises OtlpDecodeError or yields spans that keep the model's rules."""
    try:
        batch = decode_otlp_traces_partial(body, ctype)
    except OtlpDecodeError as exc:
        assert exc.message
        return
    assert batch.rejected == 0 or batch.message
    for span in batch.spans:
        assert len(span.trace_id) == 32 and len(span.span_id) == 16 and span.end_ts >= span.start_ts


@given(st.binary(max_size=300))
def test_protobuf_fuzz_raises_only_decode_errors(data: bytes) -> None:
    check_decoded_or_refused(data, PROTOBUF)


@given(st.binary(max_size=120), st.integers(0, 400))
def test_mutated_sdk_bodies_raise_only_decode_errors(junk: bytes, at: int) -> None:
    body = bytes.fromhex(SDK_BODY_HEX)
    mutated = body[:at] + junk + body[at + len(junk) :]
    check_decoded_or_refused(mutated, PROTOBUF)


JSON_KEYS = [
    *("resourceSpans", "scopeSpans", "spans", "resource", "attributes", "key", "value", "traceId", "spanId"),
    *("stringValue", "intValue", "arrayValue", "values", "events", "status", "code", "kind", "name"),
]
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=10)
    | st.floats(allow_nan=False)
)
json_doc = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(JSON_KEYS),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(json_doc)
def test_json_fuzz_raises_only_decode_errors(doc: Any) -> None:
    check_decoded_or_refused(orjson.dumps(doc), JSON)


def _sdk_body_hex() -> str:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fuzz"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("a") as a:
        a.set_attribute("k", [1, 2])
        a.add_event("e", {"x": "y"})
    body = protobuf_body(list(exporter.get_finished_spans()))
    provider.shutdown()
    return body.hex()


SDK_BODY_HEX = _sdk_body_hex()


# -- responses -------------------------------------------------------------------------------


def test_success_response_protobuf_and_json() -> None:
    full = ExportTraceServiceResponse.FromString(otlp_success_response(0, "", PROTOBUF))
    assert not full.HasField("partial_success")
    partial = ExportTraceServiceResponse.FromString(otlp_success_response(2, "bad ids", PROTOBUF))
    assert partial.partial_success.rejected_spans == 2 and partial.partial_success.error_message == "bad ids"
    assert orjson.loads(otlp_success_response(0, "", JSON)) == {}
    doc = orjson.loads(otlp_success_response(3, "why", "application/json"))
    assert doc == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "why"}}
    parsed = json_format.Parse(otlp_success_response(3, "why", JSON), ExportTraceServiceResponse())
    assert parsed.partial_success.rejected_spans == 3


def test_error_response_is_a_google_rpc_status() -> None:
    status = status_pb2.Status.FromString(otlp_error_response("body is not protobuf é", PROTOBUF))
    assert (status.code, status.message) == (3, "body is not protobuf é")
    long = status_pb2.Status.FromString(otlp_error_response("x" * 300, PROTOBUF, code=8))
    assert (long.code, long.message) == (8, "x" * 300)
    assert orjson.loads(otlp_error_response("nope", JSON)) == {"code": 3, "message": "nope"}


# -- the protobuf path's fast validation agrees with validate_span --------------------------------

def _near(limit: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, limit - 1, limit, limit + 1])


@st.composite
def _decoded_spans(draw: st.DrawFn) -> Span:
    """Spans as the protobuf decoder builds them (hex ids, valid text, known kinds), with sizes
    around every limit."""
    from airisd.model import SpanLog
    from airisd.timeparse import MAX_TS_NS
    from airisd.traceformats import (
        MAX_KEY_LEN,
        MAX_LOG_FIELDS,
        MAX_LOGS,
        MAX_OPERATION_LEN,
        MAX_SERVICE_LEN,
        MAX_TAGS,
        MAX_VALUE_LEN,
    )

    def text(limit: int) -> str:
        return draw(st.sampled_from(["x", "é", "漢"])) * draw(_near(limit))

    value = st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                      st.builds(lambda n: "v" * n, _near(MAX_VALUE_LEN)))
    key = st.builds(lambda n: "k" * n, _near(MAX_KEY_LEN))
    ts = st.sampled_from([0, 1, MAX_TS_NS - 1, MAX_TS_NS, MAX_TS_NS + 1])
    span_id = draw(st.sampled_from(["00000000000000a1", "00000000000000b2"]))
    n_tags = draw(st.sampled_from([0, 2, MAX_TAGS, MAX_TAGS + 1]))
    tags = {f"t{i}": 1 for i in range(n_tags)} | draw(st.dictionaries(key, value, max_size=3))
    logs = [SpanLog(ts=draw(ts), message=text(MAX_VALUE_LEN),
                    fields={f"f{i}": "x" for i in range(draw(_near(MAX_LOG_FIELDS)))} | draw(
                        st.dictionaries(key, value, max_size=2)))
            for _ in range(draw(st.sampled_from([0, 1, MAX_LOGS, MAX_LOGS + 1])))]
    parent = draw(st.sampled_from(["", "00000000000000a1"]))
    return Span(trace_id="0" * 31 + "1", span_id=span_id, parent_span_id=parent,
                operation_name=text(MAX_OPERATION_LEN), service_name=text(MAX_SERVICE_LEN), start_ts=draw(ts),
                end_ts=draw(ts), kind=draw(st.sampled_from(["", "server", "client"])), tags=tags, logs=logs)


@given(span=_decoded_spans())
def test_fast_validation_of_decoded_spans_agrees_with_validate_span(span: Span) -> None:
    from airisd.traceformats import decoded_span_ok, validate_span

    try:
        validate_span(span)
        valid = True
    except ValidationError:
        valid = False
    assert decoded_span_ok(span) == valid
