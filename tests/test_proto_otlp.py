"""OTLP metrics and logs: the mapping of every data kind, both encodings, partial success and
the error answers, in process."""

from __future__ import annotations

import contextlib
import gzip
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from airisd_plugins.inputs.otlp_logs import OtlpLogsInput, decode_logs, level_of
from airisd_plugins.inputs.otlp_metrics import OtlpMetricsInput
from airisd_plugins.inputs.otlp_metrics.decode import decode_metrics, format_bound
from airisd_plugins.inputs.otlp_metrics.otlp import parse_request
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from airisd.model import LogRecord
from airisd.otlp_traces import OtlpDecodeError
from tests.conftest import FakeClock
from tests.proto_helpers import plugin_client

NOW = FakeClock().now_ns
T = 1_705_314_600_000_000_000
PB = "application/x-protobuf"
JS = "application/json"


def kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}}}
    return {"key": key, "value": {"stringValue": value}}


def metrics_json(*metrics: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    res = resource if resource is not None else {"service.name": "api", "host.name": "h1"}
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [kv(k, v) for k, v in res.items()]},
                "scopeMetrics": [{"scope": {"name": "demo", "version": "1"}, "metrics": list(metrics)}],
            }
        ]
    }


def both_encodings(doc: dict[str, Any], message: Any) -> list[tuple[bytes, str]]:
    """The OTLP JSON document and the same request as protobuf (ids converted from hex)."""
    pb = parse_request(orjson.dumps(doc), JS, message).SerializeToString()
    return [(orjson.dumps(doc), JS), (pb, PB)]


BASE = {"service.name": "api", "host.name": "h1", "otel.scope.name": "demo"}

METRICS = metrics_json(
    {
        "name": "queue.depth",
        "gauge": {
            "dataPoints": [
                {
                    "asDouble": 3.5,
                    "timeUnixNano": str(T),
                    "attributes": [kv("queue", "jobs"), kv("host.name", "pt")],
                },
                {"asInt": "7", "timeUnixNano": "0"},
                {"asDouble": 1, "flags": 1},  # no recorded value: skipped
            ]
        },
    },
    {
        "name": "requests",
        "sum": {
            "isMonotonic": True,
            "aggregationTemporality": 2,
            "dataPoints": [
                {
                    "asInt": "42",
                    "timeUnixNano": str(T),
                    "attributes": [kv("ok", True), kv("code", 200), kv("tags", ["a"])],
                }
            ],
        },
    },
    {
        "name": "latency",
        "histogram": {
            "aggregationTemporality": 2,
            "dataPoints": [
                {
                    "timeUnixNano": str(T),
                    "count": "6",
                    "sum": 3.5,
                    "bucketCounts": ["1", "2", "3"],
                    "explicitBounds": [0.5, 1],
                    "min": 0.1,
                    "max": 2.5,
                }
            ],
        },
    },
    {
        "name": "size",
        "exponentialHistogram": {
            "aggregationTemporality": 2,
            "dataPoints": [
                {
                    "timeUnixNano": str(T),
                    "count": "4",
                    "sum": 10,
                    "scale": 1,
                    "zeroCount": "1",
                    "positive": {"offset": 0, "bucketCounts": ["3"]},
                }
            ],
        },
    },
    {
        "name": "rpc",
        "summary": {
            "dataPoints": [
                {
                    "timeUnixNano": str(T),
                    "count": "10",
                    "sum": 20,
                    "quantileValues": [{"quantile": 0.5, "value": 1.5}, {"quantile": 0.99, "value": 4}],
                }
            ]
        },
    },
)


@pytest.mark.parametrize(("body", "ctype"), both_encodings(METRICS, ExportMetricsServiceRequest()))
def test_every_metric_kind_maps_to_documented_points(body: bytes, ctype: str) -> None:
    out = decode_metrics(body, ctype, NOW)
    assert out.rejected == 0, out.message
    got = {(p.name, tuple(sorted(p.labels.items()))): (p.value, p.ts) for p in out.items}

    def key(name: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted({**BASE, **extra}.items()))

    assert got[key("queue.depth", queue="jobs", **{"host.name": "pt"})] == (3.5, T)  # point attributes win
    assert got[key("queue.depth")] == (7.0, NOW)  # time 0: the time received
    assert got[key("requests", ok="true", code="200", tags='["a"]')] == (42.0, T)
    assert got[key("latency_bucket", le="0.5")] == (1.0, T)
    assert got[key("latency_bucket", le="1")] == (3.0, T)  # cumulative
    assert got[key("latency_bucket", le="+Inf")] == (6.0, T)
    assert got[key("latency_sum")] == (3.5, T)
    assert got[key("latency_count")] == (6.0, T)
    assert got[key("latency_min")] == (0.1, T) and got[key("latency_max")] == (2.5, T)
    assert got[key("size_count")] == (4.0, T) and got[key("size_sum")] == (10.0, T)
    assert got[key("rpc", quantile="0.5")] == (1.5, T) and got[key("rpc", quantile="0.99")] == (4.0, T)
    assert got[key("rpc_sum")] == (20.0, T) and got[key("rpc_count")] == (10.0, T)
    assert len(out.items) == 16


def test_bad_data_points_are_rejected_alone() -> None:
    doc = metrics_json(
        {
            "name": "g",
            "gauge": {"dataPoints": [{"asDouble": "NaN"}, {"asDouble": 1}, {"asDouble": "Infinity"}]},
        },
        {
            "name": "h",
            "histogram": {"dataPoints": [{"count": "1", "bucketCounts": ["1"], "explicitBounds": [1, 2]}]},
        },
        {"name": "", "gauge": {"dataPoints": [{"asDouble": 1}]}},
        {
            "name": "many",
            "gauge": {"dataPoints": [{"asDouble": 1, "attributes": [kv(f"k{i}", "v") for i in range(70)]}]},
        },
    )
    out = decode_metrics(orjson.dumps(doc), JS, NOW)
    assert [p.name for p in out.items] == ["g"]
    assert out.rejected == 5
    assert out.message.startswith("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]")


@pytest.mark.parametrize(
    ("body", "ctype", "fragment"),
    [
        (b"{not json", JS, "not valid JSON"),
        (b"[1, 2]", JS, "JSON object"),
        (b'{"resourceMetrics": "x"}', JS, "resourceMetrics"),
        (
            b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": '
            b'{"dataPoints": [{"asInt": "x"}]}}]}]}]}',
            JS,
            "asInt",
        ),
        (b"\x0a\xff\xff\xff", PB, "protobuf"),
    ],
)
def test_undecodable_bodies_raise(body: bytes, ctype: str, fragment: str) -> None:
    with pytest.raises(OtlpDecodeError, match=fragment):
        decode_metrics(body, ctype, NOW)


@given(st.binary(max_size=300))
def test_protobuf_fuzz_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(OtlpDecodeError):
        decode_metrics(data, PB, NOW)
    with contextlib.suppress(OtlpDecodeError):
        decode_logs(data, PB, NOW)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "resourceMetrics",
                        "resourceLogs",
                        "scopeMetrics",
                        "scopeLogs",
                        "metrics",
                        "logRecords",
                        "gauge",
                        "dataPoints",
                        "asInt",
                        "body",
                        "traceId",
                        "name",
                        "x",
                    ]
                ),
                c,
                max_size=3,
            )
        ),
        max_leaves=12,
    )
)
def test_json_fuzz_never_raises_anything_else(doc: Any) -> None:
    body = orjson.dumps(doc)
    for decode in (decode_metrics, decode_logs):
        with contextlib.suppress(OtlpDecodeError):
            decode(body, JS, NOW)


def test_format_bound() -> None:
    assert [format_bound(b) for b in (1.0, 0.005, math.inf, -math.inf, 1e20, 250.0)] == [
        "1",
        "0.005",
        "+Inf",
        "-Inf",
        "1e+20",
        "250",
    ]


def test_metrics_endpoint_answers_in_the_request_encoding(tmp_path: Path) -> None:
    with plugin_client(OtlpMetricsInput, tmp_path, role="metrics") as (client, sink, _):
        body, _ = both_encodings(METRICS, ExportMetricsServiceRequest())[1]
        r = client.post(
            "/v1/metrics",
            content=gzip.compress(body),
            headers={"Content-Type": PB, "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == PB
        resp = ExportMetricsServiceResponse.FromString(r.content)
        assert not resp.HasField("partial_success")
        assert len(sink.items) == 16
        bad = metrics_json({"name": "g", "gauge": {"dataPoints": [{"asDouble": "NaN"}, {"asDouble": 2}]}})
        r = client.post("/v1/metrics", content=orjson.dumps(bad), headers={"Content-Type": JS})
        assert r.status_code == 200 and r.headers["content-type"] == JS
        assert r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
        assert "not finite" in r.json()["partialSuccess"]["errorMessage"]
        r = client.post("/v1/metrics", content=b"{bad", headers={"Content-Type": JS})
        assert r.status_code == 400 and r.json()["code"] == 3 and "JSON" in r.json()["message"]
        r = client.post("/v1/metrics", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        sink.refuse = True
        r = client.post("/v1/metrics", content=orjson.dumps(bad), headers={"Content-Type": JS})
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and r.json()["code"] == 14


# -- logs -------------------------------------------------------------------------------------------

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"

LOGS = {
    "resourceLogs": [
        {
            "resource": {"attributes": [kv("service.name", "checkout"), kv("host.name", "h1")]},
            "scopeLogs": [
                {
                    "scope": {"name": "app.logger"},
                    "logRecords": [
                        {
                            "timeUnixNano": str(T),
                            "severityNumber": 17,
                            "severityText": "Error",
                            "body": {"stringValue": "boom"},
                            "traceId": TRACE,
                            "spanId": SPAN,
                            "attributes": [
                                kv("user", "u1"),
                                kv("exception.stacktrace", "Traceback...\n  line 1"),
                            ],
                        },
                        {
                            "observedTimeUnixNano": str(T + 1),
                            "severityText": "warning",
                            "body": {"kvlistValue": {"values": [kv("a", 1)]}},
                        },
                        {"severityNumber": 9},
                    ],
                }
            ],
        }
    ]
}


@pytest.mark.parametrize(("body", "ctype"), both_encodings(LOGS, ExportLogsServiceRequest()))
def test_log_records_map_to_the_seed_fields(body: bytes, ctype: str) -> None:
    out = decode_logs(body, ctype, NOW)
    assert out.rejected == 0, out.message
    base = {"resource.host.name": "h1", "otel.scope.name": "app.logger"}
    assert out.items == [
        LogRecord(
            ts=T,
            level="ERROR",
            message="boom",
            service="checkout",
            trace_id=TRACE,
            span_id=SPAN,
            stack_trace="Traceback...\n  line 1",
            attributes={**base, "user": "u1", "otel.severity_text": "Error"},
        ),
        LogRecord(
            ts=T + 1,
            level="WARN",
            message='{"a":1}',
            service="checkout",
            attributes={**base, "otel.severity_text": "warning"},
        ),
        LogRecord(ts=NOW, level="INFO", message="", service="checkout", attributes=base),
    ]


def test_bad_log_records_are_rejected_alone(tmp_path: Path) -> None:
    doc = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"body": {"stringValue": "ok"}},
                            {"body": {"stringValue": "bad id"}, "traceId": "xyz"},
                            {"body": {"stringValue": "short id"}, "spanId": "abcd"},
                            {"body": {"stringValue": "x" * 70_000}},
                        ]
                    }
                ]
            }
        ]
    }
    out = decode_logs(orjson.dumps(doc), JS, NOW)
    assert [r.message for r in out.items] == ["ok"] and out.items[0].service == "unknown_service"
    assert out.rejected == 3 and "logRecords[1]" in out.message
    with plugin_client(OtlpLogsInput, tmp_path, role="log") as (client, sink, _):
        r = client.post("/v1/logs", content=orjson.dumps(doc), headers={"Content-Type": JS})
        assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedLogRecords"] == "3"
        pb = both_encodings(LOGS, ExportLogsServiceRequest())[1][0]
        r = client.post("/v1/logs", content=pb, headers={"Content-Type": PB})
        assert r.status_code == 200
        assert not ExportLogsServiceResponse.FromString(r.content).HasField("partial_success")
        assert len(sink.items) == 4
        r = client.post("/v1/logs", content=b"\xff\xff", headers={"Content-Type": PB})
        assert r.status_code == 400 and r.headers["content-type"] == PB


def test_severity_numbers() -> None:
    assert [level_of(n, "") for n in (0, 1, 4, 5, 9, 13, 17, 21, 24, 25)] == [
        "UNKNOWN",
        "TRACE",
        "TRACE",
        "DEBUG",
        "INFO",
        "WARN",
        "ERROR",
        "FATAL",
        "FATAL",
        "UNKNOWN",
    ]
    assert level_of(0, "CRITICAL") == "FATAL" and level_of(0, "whatever") == "UNKNOWN"
