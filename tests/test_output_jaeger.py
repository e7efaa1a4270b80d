"""The jaeger output's own logic: config, the OTLP encoding (checked against airisd's own OTLP
decoder), the Jaeger-JSON reading, and how HTTP answers become Transient/PermanentError (against
a real HTTP server on a loopback socket)."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from airisd_plugins.outputs.jaeger import JaegerOutput
from airisd_plugins.outputs.jaeger.config import JaegerConfig, query_url, redacted, traces_url
from airisd_plugins.outputs.jaeger.exporter import OtlpHttpExporter, RetryLater, retry_after_secs
from airisd_plugins.outputs.jaeger.jaeger_json import spans_of
from airisd_plugins.outputs.jaeger.otlp import (
    ORIGINAL_PARENT_ID,
    ORIGINAL_SPAN_ID,
    ORIGINAL_TRACE_ID,
    encode_request,
    encode_spans,
    normalized,
    wire_span_id,
    wire_trace_id,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, Signal, Span, SpanLog
from airisd.otlp_traces import PROTOBUF, decode_otlp_traces
from airisd.testing import make_context
from airisd.timeparse import MAX_TS_NS
from airisd.traceformats import is_error, jaeger_trace
from tests.e2e_helpers import free_port

# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://jaeger:4318", "http://jaeger:4318/v1/traces"),
    ("http://jaeger:4318/", "http://jaeger:4318/v1/traces"),
    ("https://otel.example:443/v1/traces", "https://otel.example:443/v1/traces"),
    ("http://proxy/otlp", "http://proxy/otlp/v1/traces"),
    # the seed's .env: Jaeger's Thrift collector, which takes no OTLP -> the same host's OTLP port
    ("http://localhost:14268/api/traces", "http://localhost:4318/v1/traces"),
    ("http://[::1]:14268/api/traces", "http://[::1]:4318/v1/traces"),
    ("http://collector:9999/api/traces", "http://collector:9999/v1/traces"),
])
def test_traces_url(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_endpoint_defaults_to_jaeger_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAEGER_ENDPOINT", raising=False)
    monkeypatch.delenv("JAEGER_QUERY_URL", raising=False)
    assert traces_url("") == "http://127.0.0.1:4318/v1/traces"
    assert query_url("", "") == "http://127.0.0.1:16686"
    monkeypatch.setenv("JAEGER_ENDPOINT", "http://localhost:14268/api/traces")
    assert traces_url("") == "http://localhost:4318/v1/traces"
    assert query_url("", "") == "http://localhost:16686"
    monkeypatch.setenv("JAEGER_QUERY_URL", "http://q:16686/")
    assert query_url("", "") == "http://q:16686"
    assert query_url("http://mine:1", "") == "http://mine:1"


@pytest.mark.parametrize(("options", "message"), [
    ({"endpoint": "ftp://x/"}, "endpoint must be an http:// or https:// URL with a host, got 'ftp://x/'"),
    ({"endpoint": "http://x:99999"}, "endpoint is not a URL: 'http://x:99999'"),
    ({"endpoint": "http://x/?a=1"}, "must not have a query"),
    ({"query_url": "localhost:16686"}, "query_url must be an http:// or https:// URL"),
    ({"compression": "zstd"}, "compression must be 'none' or 'gzip', got 'zstd'"),
    ({"timeout_secs": 0}, "timeout_secs must be positive, got 0"),
])
def test_bad_config_names_option_and_value(options: dict[str, Any], message: str) -> None:
    config = msgspec.convert(options, JaegerConfig)
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("(", r"\(")):
        config.validate()


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="endpont"):
        msgspec.convert({"endpont": "http://x"}, JaegerConfig)


def test_urls_in_messages_lose_their_credentials() -> None:
    assert redacted("https://user:secret@jaeger:4318/v1/traces") == "https://jaeger:4318/v1/traces"
    assert redacted("http://[::1]:16686") == "http://[::1]:16686"
    exporter = OtlpHttpExporter("http://u:pw@127.0.0.1:1/v1/traces", headers={}, timeout_secs=1, gzip_body=False)
    assert "pw" not in exporter.shown_url


# -- spans for the property tests ----------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_ident = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=64)
_hex32 = st.binary(min_size=16, max_size=16).filter(any).map(bytes.hex)
_hex16 = st.binary(min_size=8, max_size=8).filter(any).map(bytes.hex)
_trace_ids = st.one_of(_hex32, _hex16, _ident)
_span_ids = st.one_of(_hex16, _ident)
_scalars = st.one_of(
    _text, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
_special_keys = st.sampled_from([
    "otel.scope.name", "otel.scope.version", "otel.status_code", "otel.status_description", "resource.host",
    "resource.service.name", "resource.", "error", "http.status_code", "span.kind"])
_keys = st.one_of(_text.filter(lambda k: k != "" and not k.startswith("airisd.")), _special_keys)
_status_values = st.sampled_from(["OK", "ERROR", "UNSET", ""])
_ts = st.integers(0, MAX_TS_NS)


@st.composite
def _tags(draw: st.DrawFn, keys: st.SearchStrategy[str] = _keys) -> dict[str, Any]:
    tags = draw(st.dictionaries(keys, _scalars, max_size=6))
    if draw(st.booleans()):
        tags["otel.status_code"] = draw(_status_values)
    return tags


@st.composite
def spans(draw: st.DrawFn, keys: st.SearchStrategy[str] = _keys) -> Span:
    """A span as airisd's inputs build it: its error flag covers the tags' error rule."""
    start = draw(_ts)
    span_id = draw(_span_ids)
    parent = draw(st.one_of(st.just(""), _span_ids.filter(lambda p: p != span_id)))
    tags = draw(_tags(keys))
    logs = draw(st.lists(st.builds(SpanLog, ts=_ts, message=_text,
                                   fields=st.dictionaries(_keys.filter(lambda k: k != "event"), _scalars,
                                                          max_size=3)), max_size=3))
    return Span(
        trace_id=draw(_trace_ids), span_id=span_id, parent_span_id=parent,
        operation_name=draw(_text), service_name=draw(st.sampled_from(["api", "db", "cache", "서비스"])),
        start_ts=start, end_ts=draw(st.integers(start, MAX_TS_NS)),
        kind=draw(st.sampled_from(["", "server", "client", "producer", "consumer", "internal"])),
        error=draw(st.booleans()) or is_error(tags), tags=tags, logs=logs,
    )


def _restore_ids(span: Span) -> Span:
    """What the query store does with the ids kept as attributes."""
    tags = dict(span.tags)
    trace_id = str(tags.pop(ORIGINAL_TRACE_ID, span.trace_id))
    span_id = str(tags.pop(ORIGINAL_SPAN_ID, span.span_id))
    parent = str(tags.pop(ORIGINAL_PARENT_ID, span.parent_span_id))
    return msgspec.structs.replace(span, trace_id=trace_id, span_id=span_id, parent_span_id=parent, tags=tags)


# -- the OTLP encoding ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(), min_size=1, max_size=8))
@example([Span(trace_id="0000000000000001", span_id="0000000000000001", operation_name="", service_name="api",
               start_ts=0, end_ts=0),
          Span(trace_id="0", span_id="0000000000000001", operation_name="", service_name="db", start_ts=0, end_ts=0),
          Span(trace_id="00000000000000000000000000000001", span_id="0", operation_name="", service_name="api",
               start_ts=0, end_ts=0),
          Span(trace_id="0", span_id="0000000000000001", operation_name="", service_name="api", start_ts=0,
               end_ts=0)])  # what CI drew: ties in (ids, start) that the encoding regroups by service
def test_encoding_round_trips_through_airisd_decoder(batch: list[Span]) -> None:
    decoded = decode_otlp_traces(encode_spans(batch), PROTOBUF)
    assert sorted(map(_restore_ids, decoded), key=_key) == sorted(map(normalized, batch), key=_key)


def _key(span: Span) -> tuple[Any, ...]:
    # Total over every field: spans equal in ids and start but not in service (CI drew that) must
    # still sort the same way on both sides.
    return span.trace_id, span.span_id, span.start_ts, orjson.dumps(msgspec.to_builtins(span),
                                                                     option=orjson.OPT_SORT_KEYS)


def test_encoding_groups_by_service_and_scope_and_maps_fields() -> None:
    a = Span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", operation_name="GET /users",
             service_name="api", start_ts=10, end_ts=20, kind="server", error=True,
             tags={"http.status_code": 503, "ratio": 0.5, "cached": False, "resource.host": "h1",
                   "otel.scope.name": "lib", "otel.status_description": "upstream down"},
             logs=[SpanLog(ts=15, message="retry", fields={"attempt": 2})])
    b = Span(trace_id="abc123def456ghi789", span_id="span_002", parent_span_id="span_001", operation_name="query",
             service_name="db", start_ts=11, end_ts=12)
    c = msgspec.structs.replace(a, span_id="b7ad6b7169203332", tags={"resource.host": "h1"}, error=False)
    request = encode_request([a, b, c])
    assert len(request.resource_spans) == 2
    api = request.resource_spans[0]
    assert {kv.key: kv.value.string_value for kv in api.resource.attributes} == {"service.name": "api", "host": "h1"}
    assert [ss.scope.name for ss in api.scope_spans] == ["lib", ""]
    sp = api.scope_spans[0].spans[0]
    assert (sp.kind, sp.status.code, sp.status.message) == (2, 2, "upstream down")
    attrs = {kv.key: kv.value for kv in sp.attributes}
    assert attrs["http.status_code"].int_value == 503
    assert attrs["ratio"].double_value == 0.5
    assert attrs["cached"].WhichOneof("value") == "bool_value"
    assert [(e.name, e.time_unix_nano, e.attributes[0].value.int_value) for e in sp.events] == [("retry", 15, 2)]
    db = request.resource_spans[1].scope_spans[0].spans[0]
    assert db.trace_id == wire_trace_id("abc123def456ghi789") and len(db.trace_id) == 16
    assert db.parent_span_id == wire_span_id("span_001") and len(db.parent_span_id) == 8
    kept = {kv.key: kv.value.string_value for kv in db.attributes}
    assert kept == {ORIGINAL_TRACE_ID: "abc123def456ghi789", ORIGINAL_SPAN_ID: "span_002",
                    ORIGINAL_PARENT_ID: "span_001"}
    assert wire_trace_id("00000000000000000000000000000000") != bytes(16)  # all-zero is invalid in OTLP
    assert wire_trace_id("b7ad6b7169203331") == bytes(8) + bytes.fromhex("b7ad6b7169203331")


# -- Jaeger's JSON back into spans ----------------------------------------------------------------

_plain_keys = _keys.filter(lambda k: k not in ("error", "span.kind"))


@settings(max_examples=100, deadline=None)
@given(st.lists(spans(_plain_keys), min_size=1, max_size=6, unique_by=lambda s: (wire_trace_id(s.trace_id),
                                                                                 wire_span_id(s.span_id))))
def test_jaeger_json_reads_back_what_airisd_renders(batch: list[Span]) -> None:
    """OTLP → airisd (the stand-in) → Jaeger JSON → spans: the spans sent, at Jaeger's µs precision.
    Excluded from the tags: ``error`` and ``span.kind``, which Jaeger's model folds into the flag and kind;
    span ids are unique per trace (a repeated one reads back once: see the test below)."""
    stored = decode_otlp_traces(encode_spans(batch), PROTOBUF)
    by_trace: dict[str, list[Span]] = {}
    for span in stored:
        by_trace.setdefault(span.trace_id, []).append(span)
    read = [s for spans_ in by_trace.values() for s in spans_of(orjson.loads(orjson.dumps(jaeger_trace(spans_))))]
    expected = [_micros(normalized(s)) for s in batch]
    assert sorted(read, key=_key) == sorted(expected, key=_key)


def test_a_span_delivered_twice_reads_back_once() -> None:
    first = Span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", operation_name="op",
                 service_name="api", start_ts=1_000, end_ts=2_000)
    again = msgspec.structs.replace(first, operation_name="op (again)")
    assert [s.operation_name for s in spans_of(jaeger_trace([first, again]))] == ["op (again)"]


def _micros(span: Span) -> Span:
    start = span.start_ts // 1000 * 1000
    logs = [msgspec.structs.replace(log, ts=log.ts // 1000 * 1000) for log in span.logs]
    return msgspec.structs.replace(span, start_ts=start, end_ts=start + span.duration_ns // 1000 * 1000, logs=logs)


# -- HTTP outcomes, against a real server on a loopback socket ------------------------------------


class _Receiver(http.server.ThreadingHTTPServer):
    """Answers each POST with the next (status, headers, body) in ``replies`` and keeps what it got."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str], bytes]] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", free_port()), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status, headers, reply = self.server.replies.pop(0) if self.server.replies else (200, {}, b"")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _exporter(url: str, *, gzip_body: bool = False) -> OtlpHttpExporter:
    return OtlpHttpExporter(url, headers={"X-Api-Key": "k1"}, timeout_secs=5, gzip_body=gzip_body)


SPAN = Span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", operation_name="op",
            service_name="api", start_ts=1, end_ts=2)


@pytest.mark.anyio
async def test_export_sends_protobuf_gzip_and_headers_and_reads_partial_success(receiver: _Receiver) -> None:
    partial = ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
        rejected_spans=3, error_message="bad span"))
    receiver.replies.append((200, {"Content-Type": PROTOBUF}, partial.SerializeToString()))
    exporter = _exporter(f"http://127.0.0.1:{receiver.server_port}/v1/traces", gzip_body=True)
    await exporter.start()
    try:
        outcome = await exporter.export(encode_spans([SPAN]))
        assert (outcome.rejected_spans, outcome.message) == (3, "bad span")
        assert (await exporter.export(encode_spans([SPAN]))).rejected_spans == 0  # empty 200 body: all taken
    finally:
        await exporter.close()
        await exporter.close()  # safe twice
    headers, body = receiver.received[0]
    assert headers["content-type"] == PROTOBUF and headers["content-encoding"] == "gzip"
    assert headers["x-api-key"] == "k1"
    assert decode_otlp_traces(gzip.decompress(body), PROTOBUF) == [SPAN]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "headers", "error", "retry_after"), [
    (429, {"Retry-After": "7"}, RetryLater, 7.0),
    (503, {}, RetryLater, 0.0),
    (502, {}, RetryLater, 0.0),
    (504, {"Retry-After": "junk"}, RetryLater, 0.0),
    (400, {}, PermanentError, None),
    (413, {}, PermanentError, None),
    (500, {}, PermanentError, None),  # OTLP/HTTP: only 429, 502, 503 and 504 are retryable
])
async def test_export_errors(receiver: _Receiver, status: int, headers: dict[str, str],
                             error: type[Exception], retry_after: float | None) -> None:
    receiver.replies.append((status, headers, b"no thanks"))
    exporter = _exporter(f"http://127.0.0.1:{receiver.server_port}/v1/traces")
    await exporter.start()
    try:
        with pytest.raises(error, match=f"HTTP {status}: no thanks") as info:
            await exporter.export(encode_spans([SPAN]))
    finally:
        await exporter.close()
    if retry_after is not None:
        assert isinstance(info.value, RetryLater) and info.value.retry_after_secs == retry_after


@pytest.mark.anyio
async def test_export_to_a_closed_port_is_transient() -> None:
    exporter = _exporter(f"http://127.0.0.1:{free_port()}/v1/traces")
    await exporter.start()
    try:
        with pytest.raises(TransientError, match="ConnectError"):
            await exporter.export(b"")
    finally:
        await exporter.close()


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after_secs("3") == 3.0
    assert retry_after_secs(None) == 0.0
    assert retry_after_secs("100000") == 60.0  # capped: the runner's backoff takes over
    assert retry_after_secs("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


@pytest.mark.anyio
async def test_output_hands_retry_after_to_the_runner_and_counts_rejected_spans(receiver: _Receiver,
                                                                                  tmp_path: Path) -> None:
    ctx = make_context(tmp_path, name="jaeger")
    output = JaegerOutput(JaegerConfig(endpoint=f"http://127.0.0.1:{receiver.server_port}"), ctx)
    partial = ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(rejected_spans=1))
    receiver.replies += [(429, {"Retry-After": "1"}, b""), (200, {}, partial.SerializeToString())]
    await output.start()
    try:
        started = time.monotonic()
        with pytest.raises(RetryLater) as info:
            await output.write(Batch(Signal.TRACES, [SPAN]))
        # The runner waits it out (tests/test_pipeline.py), so a stop can cut the wait short.
        assert info.value.retry_after_secs == 1.0 and time.monotonic() - started < 0.9
        await output.write(Batch(Signal.TRACES, [SPAN, SPAN]))
    finally:
        await output.shutdown()
        await output.shutdown()
    assert output.m_rejected.get(output.url) == 1
    assert len(receiver.received) == 2
