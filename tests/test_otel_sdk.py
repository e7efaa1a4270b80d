"""A real client: the OpenTelemetry Python SDK's OTLP/HTTP exporter sends spans to `airisd run`,
and they come back through the seed's API and the Jaeger query API. Also OTLP's JSON encoding,
built by hand as the specification shows it."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.e2e_helpers import AirisProcess
from tests.test_e2e_logs import KEEP_ALL, envelope_ok
from tests.test_e2e_traces import jaeger

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    # KEEP_ALL: the spec's example spans are from 2018, older than the default retention.
    proc = AirisProcess(tmp_path_factory.mktemp("otel") / "data", role="trace", extra_args=KEEP_ALL).start()
    yield proc
    assert "Traceback" not in proc.log()
    proc.stop()


def send_checkout_trace(airis: AirisProcess, service: str, compression: Compression) -> str:
    """What an instrumented application does; returns the trace id (32 hex digits)."""
    exporter = OTLPSpanExporter(
        endpoint=airis.url("trace") + "/v1/traces",
        headers=airis.auth_headers(),
        compression=compression,
        timeout=10,
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.checkout", "1.2.3")
    with tracer.start_as_current_span(
        "POST /checkout", kind=SpanKind.SERVER, attributes={"http.method": "POST", "http.route": "/checkout"}
    ) as root:
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as query:
            query.set_attributes(
                {
                    "db.system": "sqlite",
                    "db.rows": 3,
                    "db.cost": 0.25,
                    "db.cached": False,
                    "db.tables": ["orders", "items"],
                }
            )
            query.add_event("cache miss", {"cache.key": "order:42"})
            query.set_status(Status(StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span("render receipt"):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()  # flushes the batch processor: the export happens here
    return trace_id


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_sdk_spans_come_back_through_both_apis(
    airis: AirisProcess, compression: Compression, caplog: pytest.LogCaptureFixture
) -> None:
    service = f"otel-shop-{compression.value}"
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        trace_id = send_checkout_trace(airis, service, compression)
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")], (
        caplog.text
    )  # no export error
    c = airis.client("trace")

    view = envelope_ok(c.get(f"/traces/{trace_id}"))
    assert (view["trace_id"], view["span_count"], view["services"]) == (trace_id, 3, [service])
    assert (view["root_service"], view["root_operation"], view["error"]) == (service, "POST /checkout", True)
    root, query, render = view["spans"]
    assert [s["operation_name"] for s in view["spans"]] == [
        "POST /checkout",
        "SELECT orders",
        "render receipt",
    ]
    assert root["parent_span_id"] is None and root["children"] == [query["span_id"], render["span_id"]]
    assert query["parent_span_id"] == root["span_id"] and query["depth"] == 1 and render["depth"] == 1
    assert (root["kind"], query["kind"], render["kind"]) == ("server", "client", "internal")
    assert root["tags"]["http.method"] == "POST" and root["error"] is False
    tags = query["tags"]
    assert (tags["db.system"], tags["db.rows"], tags["db.cost"], tags["db.cached"]) == (
        "sqlite",
        3,
        0.25,
        False,
    )
    assert orjson.loads(tags["db.tables"]) == ["orders", "items"]
    assert (tags["otel.status_code"], tags["otel.status_description"]) == ("ERROR", "timeout")
    assert (tags["otel.scope.name"], tags["otel.scope.version"]) == ("shop.checkout", "1.2.3")
    assert tags["resource.deployment.environment"] == "test" and query["error"] is True
    (event,) = query["logs"]
    assert event["message"] == "cache miss" and event["cache.key"] == "order:42"
    assert root["start_time"] <= query["start_time"] <= query["end_time"] <= root["end_time"]

    # The Jaeger API, as Grafana's Jaeger data source reads it (data source URL http://HOST:8003)
    assert service in jaeger(c.get("/api/services"))
    assert jaeger(c.get(f"/api/services/{service}/operations")) == [
        "POST /checkout",
        "SELECT orders",
        "render receipt",
    ]
    (trace,) = jaeger(c.get(f"/api/traces/{trace_id}"))
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert spans["SELECT orders"]["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_id, "spanID": root["span_id"]}
    ]
    assert {"key": "error", "type": "bool", "value": True} in spans["SELECT orders"]["tags"]
    assert spans["SELECT orders"]["logs"][0]["fields"][0] == {
        "key": "event",
        "type": "string",
        "value": "cache miss",
    }
    process = trace["processes"][spans["POST /checkout"]["processID"]]
    assert process["serviceName"] == service
    assert {"key": "deployment.environment", "type": "string", "value": "test"} in process["tags"]
    for params in (
        {"service": service},
        {"service": service, "operation": "SELECT orders"},
        {"service": service, "tags": '{"error":"true"}'},
        {"service": service, "minDuration": "0ms"},
    ):
        found = jaeger(c.get("/api/traces", params=params))
        assert [t["traceID"] for t in found] == [trace_id], params
    assert (
        jaeger(
            c.get(
                "/api/traces",
                params={"service": service, "operation": "render receipt", "tags": '{"error":"true"}'},
            )
        )
        == []
    )
    found = envelope_ok(c.get("/traces/search", params={"service": service, "tags": "db.system:sqlite"}))
    assert [t["trace_id"] for t in found["traces"]] == [trace_id]


# The example request in opentelemetry-proto's examples/trace.json, with the ids in upper case
# (hex ids are case-insensitive in OTLP/JSON) and 64-bit integers as strings.
SPEC_EXAMPLE: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [
                            {"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}
                        ],
                    },
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                        }
                    ],
                }
            ],
        }
    ],
}


def test_otlp_json_as_the_spec_shows(airis: AirisProcess) -> None:
    c = airis.client("trace")
    resp = c.post(
        "/v1/traces", content=orjson.dumps(SPEC_EXAMPLE), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.json() == {}  # a full success has no partialSuccess
    view = envelope_ok(c.get("/traces/5b8efff798038103d269b633813fc60c"))
    (span,) = view["spans"]
    assert (span["span_id"], span["parent_span_id"]) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (span["service_name"], span["kind"], span["duration_ms"]) == ("my.service", "server", 1000.0)
    assert span["start_time"] == "2018-12-13T14:51:00.000Z" and span["tags"]["my.span.attr"] == "some value"
    assert view["root_operation"] == "I'm a server span"  # its parent is not in the trace: an orphan root


def test_otlp_json_gzip_enums_events_and_partial_success(airis: AirisProcess) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-shop"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "b7ad6b7169203331",
                                "name": "GET /cart",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": 1_706_788_800_000_000_000,
                                "endTimeUnixNano": "1706788800120000000",
                                "attributes": [
                                    {"key": "http.status_code", "value": {"intValue": "503"}},
                                    {"key": "retry", "value": {"boolValue": True}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1706788800050000000",
                                        "name": "retrying",
                                        "attributes": [{"key": "attempt", "value": {"intValue": 2}}],
                                    }
                                ],
                                "status": {"code": "STATUS_CODE_ERROR", "message": "upstream down"},
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "not-hex!",
                                "name": "bad",
                                "startTimeUnixNano": "1706788800000000000",
                                "endTimeUnixNano": "1706788800000000001",
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "c7ad6b7169203331",
                                "name": "backwards",
                                "startTimeUnixNano": "1706788800000000002",
                                "endTimeUnixNano": "1706788800000000001",
                            },
                        ]
                    }
                ],
            }
        ]
    }
    resp = airis.client("trace").post(
        "/v1/traces",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200, resp.text
    partial = resp.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2 and partial["errorMessage"]
    view = envelope_ok(airis.client("trace").get(f"/traces/{trace_id}"))
    (span,) = view["spans"]
    assert (span["kind"], span["error"], span["duration_ms"]) == ("server", True, 120.0)
    assert (span["tags"]["http.status_code"], span["tags"]["retry"], span["tags"]["ratio"]) == (
        503,
        True,
        0.5,
    )
    assert span["tags"]["otel.status_description"] == "upstream down"
    assert span["logs"] == [{"attempt": 2, "timestamp": "2024-02-01T12:00:00.050Z", "message": "retrying"}]
