"""The trace role end to end: `airisd run` as a subprocess, the seed's span API, search, the Jaeger
query API, Zipkin v2, OTLP errors, bad input, self-tracing and `kill -9` durability."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.rpc.status_pb2 import Status
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tests.e2e_helpers import AirisProcess
from tests.test_e2e_logs import KEEP_ALL, envelope_error, envelope_ok

pytestmark = pytest.mark.e2e

SEED_SPAN: dict[str, Any] = {
    "trace_id": "abc123def456ghi789",
    "span_id": "span_001",
    "parent_span_id": None,
    "operation_name": "GET /api/users",
    "start_time": "2024-01-15T10:30:00.000Z",
    "end_time": "2024-01-15T10:30:00.250Z",
    "duration_ms": 250,
    "service_name": "user-api",
    "tags": {"http.method": "GET", "http.url": "/api/users", "http.status_code": 200, "component": "http"},
    "logs": [{"timestamp": "2024-01-15T10:30:00.050Z", "message": "Query database for users"}],
}


def us(rfc3339: str) -> str:
    """An RFC 3339 time as the epoch microseconds Jaeger's API takes."""
    from airisd.timeparse import parse_timestamp

    return str(parse_timestamp(rfc3339) // 1000)


def jaeger(resp: httpx.Response, status: int = 200) -> Any:
    """Jaeger's query-API envelope; returns data (or errors for a failure)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"data", "total", "limit", "offset", "errors"}, body
    if status == 200:
        assert body["errors"] is None
        return body["data"]
    assert body["data"] is None and body["errors"][0]["code"] == status and body["errors"][0]["msg"]
    return body["errors"]


def test_seed_trace_curls(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="trace", extra_args=KEEP_ALL).start()
    try:
        c = airis.client("trace")
        assert envelope_ok(c.post("/traces", json=SEED_SPAN), 201) == {"accepted": 1}
        slow = {
            **SEED_SPAN,
            "trace_id": "slow-trace-1",
            "span_id": "s1",
            "operation_name": "GET /api/report",
            "start_time": "2024-01-15T10:40:00Z",
            "end_time": "2024-01-15T10:40:00.750Z",
            "logs": [],
        }
        del slow["duration_ms"]  # derived from the times
        failed = {
            "trace_id": "error-trace-1",
            "span_id": "e1",
            "operation_name": "POST /api/pay",
            "service_name": "payment-api",
            "start_time": "2024-01-15T10:50:00Z",
            "duration_ms": 20,
            "tags": {"error": True, "http.status_code": 503},
        }
        assert envelope_ok(c.post("/traces", json={"spans": [slow, failed]}), 201) == {"accepted": 2}

        # 트레이스 ID로 조회
        view = envelope_ok(c.get("/traces/abc123def456ghi789"))
        assert view == {
            "trace_id": "abc123def456ghi789",
            "root_service": "user-api",
            "root_operation": "GET /api/users",
            "start_time": "2024-01-15T10:30:00.000Z",
            "end_time": "2024-01-15T10:30:00.250Z",
            "duration_ms": 250.0,
            "span_count": 1,
            "services": ["user-api"],
            "error": False,
            "spans": [
                {
                    **SEED_SPAN,
                    "start_time": "2024-01-15T10:30:00.000Z",
                    "end_time": "2024-01-15T10:30:00.250Z",
                    "duration_ms": 250.0,
                    "kind": None,
                    "error": False,
                    "children": [],
                    "depth": 0,
                }
            ],
        }
        # 서비스별 트레이스 조회
        found = envelope_ok(
            c.get(
                "/traces/search",
                params={"service": "user-api", "from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"},
            )
        )
        assert [t["trace_id"] for t in found["traces"]] == ["slow-trace-1", "abc123def456ghi789"]
        assert found["count"] == 2 and found["limit"] == 20
        # 느린 트레이스 조회 (500ms 이상)
        found = envelope_ok(c.get("/traces/search", params={"min_duration": "500ms"}))
        assert [(t["trace_id"], t["duration_ms"]) for t in found["traces"]] == [("slow-trace-1", 750.0)]
        # 오류 트레이스 조회
        found = envelope_ok(c.get("/traces/search", params={"tags": "error:true"}))
        assert found["traces"] == [
            {
                "trace_id": "error-trace-1",
                "root_service": "payment-api",
                "root_operation": "POST /api/pay",
                "start_time": "2024-01-15T10:50:00.000Z",
                "duration_ms": 20.0,
                "span_count": 1,
                "services": ["payment-api"],
                "error": True,
            }
        ]

        # The same through the Jaeger API (the seed's Jaeger UI, or Grafana on http://HOST:8003)
        assert jaeger(c.get("/api/services")) == ["payment-api", "user-api"]
        assert jaeger(c.get("/api/services/user-api/operations")) == ["GET /api/report", "GET /api/users"]
        traces = jaeger(
            c.get(
                "/api/traces",
                params={
                    "service": "user-api",
                    "start": us("2024-01-15T10:00:00Z"),
                    "end": us("2024-01-15T11:00:00Z"),
                    "lookback": "custom",
                    "limit": "20",
                },
            )
        )
        assert [t["traceID"] for t in traces] == ["slow-trace-1", "abc123def456ghi789"]
        (trace,) = jaeger(c.get("/api/traces/abc123def456ghi789"))
        (span,) = trace["spans"]
        assert span["startTime"] == int(us("2024-01-15T10:30:00Z")) and span["duration"] == 250_000
        assert {"key": "http.status_code", "type": "int64", "value": 200} in span["tags"]
        assert span["logs"] == [
            {
                "timestamp": int(us("2024-01-15T10:30:00.050Z")),
                "fields": [{"key": "event", "type": "string", "value": "Query database for users"}],
            }
        ]
        assert trace["processes"][span["processID"]]["serviceName"] == "user-api"
        assert "Traceback" not in airis.log()
    finally:
        airis.stop()


# -- a shared daemon for the rest: each test uses its own services and trace ids -----------------


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path_factory.mktemp("traces") / "data", role="trace", extra_args=KEEP_ALL).start()
    yield proc
    assert "Traceback" not in proc.log()
    proc.stop()


T0 = "2024-02-01T12:00:00"
TREE = [  # posted out of order; ids and times chosen so the expected tree is plain to read
    {
        "trace_id": "tree-1",
        "span_id": "c",
        "parent_span_id": "b",
        "operation_name": "INSERT orders",
        "service_name": "t-orders",
        "start_time": f"{T0}.020Z",
        "end_time": f"{T0}.120Z",
        "kind": "client",
        "tags": {"db.system": "postgres", "component": "sql"},
    },
    {
        "trace_id": "tree-1",
        "span_id": "d",
        "parent_span_id": "a",
        "operation_name": "charge",
        "service_name": "t-payments",
        "end_time": f"{T0}.390Z",
        "duration_ms": 60,
        "tags": {"http.status_code": 502},
    },
    {
        "trace_id": "tree-1",
        "span_id": "a",
        "operation_name": "GET /checkout",
        "service_name": "t-gateway",
        "start_time": f"{T0}.000Z",
        "end_time": f"{T0}.400Z",
        "kind": "server",
    },
    {
        "trace_id": "tree-1",
        "span_id": "b",
        "parent_span_id": "a",
        "operation_name": "POST /orders",
        "service_name": "t-orders",
        "start_time": f"{T0}.010Z",
        "duration_ms": 300,
        "kind": "server",
    },
]
OTHER = {
    "trace_id": "tree-2",
    "span_id": "x",
    "operation_name": "GET /orders",
    "service_name": "t-orders",
    "start_time": "2024-02-01T12:00:01Z",
    "duration_ms": 50,
    "tags": {"db.system": "postgres"},
}


@pytest.fixture(scope="module")
def tree(airis: AirisProcess) -> AirisProcess:
    c = airis.client("trace")
    assert envelope_ok(c.post("/traces/batch", json={"spans": TREE}), 201) == {"accepted": 4}
    assert envelope_ok(c.post("/traces", json=[OTHER]), 201) == {"accepted": 1}
    return airis


def test_trace_tree(tree: AirisProcess) -> None:
    view = envelope_ok(tree.client("trace").get("/traces/tree-1"))
    assert (view["root_service"], view["root_operation"]) == ("t-gateway", "GET /checkout")
    assert view["services"] == ["t-gateway", "t-orders", "t-payments"]
    assert (view["span_count"], view["duration_ms"], view["error"]) == (4, 400.0, True)
    assert (view["start_time"], view["end_time"]) == (f"{T0}.000Z", f"{T0}.400Z")
    shape = [(s["span_id"], s["parent_span_id"], s["children"], s["depth"]) for s in view["spans"]]
    assert shape == [("a", None, ["b", "d"], 0), ("b", "a", ["c"], 1), ("c", "b", [], 2), ("d", "a", [], 1)]
    by_id = {s["span_id"]: s for s in view["spans"]}
    assert by_id["b"]["end_time"] == f"{T0}.310Z"  # from duration_ms
    assert by_id["d"]["start_time"] == f"{T0}.330Z"  # from end_time - duration_ms
    assert by_id["d"]["error"] is True and by_id["c"]["error"] is False  # 5xx is an error
    assert by_id["c"]["kind"] == "client" and by_id["c"]["tags"] == {
        "db.system": "postgres",
        "component": "sql",
    }


SEARCHES: list[tuple[dict[str, str], list[str]]] = [
    ({"service": "t-orders"}, ["tree-2", "tree-1"]),  # newest matching span first
    ({"service": "t-orders", "limit": "1"}, ["tree-2"]),
    ({"operation": "charge"}, ["tree-1"]),
    ({"service": "t-gateway", "operation": "charge"}, []),  # one span must match every condition
    ({"service": "t-orders", "min_duration": "250ms"}, ["tree-1"]),
    ({"service": "t-gateway", "min_duration": "0.4s"}, ["tree-1"]),  # inclusive
    ({"service": "t-gateway", "min_duration": "401ms"}, []),
    ({"service": "t-orders", "max_duration": "50ms"}, ["tree-2"]),
    ({"service": "t-orders", "min_duration": "60ms", "max_duration": "100ms"}, ["tree-1"]),
    ({"tags": "http.status_code:502"}, ["tree-1"]),
    ({"tags": "db.system:postgres"}, ["tree-2", "tree-1"]),
    ({"tags": "db.system:postgres,component:sql"}, ["tree-1"]),
    ({"tags": "error:true,db.system:postgres"}, []),  # error and postgres are on different spans
    ({"tags": "error:true", "service": "t-payments"}, ["tree-1"]),
    ({"service": "t-orders", "from": "2024-02-01T12:00:00.500Z"}, ["tree-2"]),
    ({"service": "t-orders", "to": "2024-02-01T12:00:00.500Z"}, ["tree-1"]),
    (
        {"service": "t-orders", "from": "2024-02-01T12:00:00.010Z", "to": "2024-02-01T12:00:00.010Z"},
        ["tree-1"],
    ),
]


@pytest.mark.parametrize(("params", "expected"), SEARCHES, ids=[str(p) for p, _ in SEARCHES])
def test_search(tree: AirisProcess, params: dict[str, str], expected: list[str]) -> None:
    data = envelope_ok(tree.client("trace").get("/traces/search", params=params))
    assert [t["trace_id"] for t in data["traces"]] == expected


def test_search_summary_describes_the_whole_trace(tree: AirisProcess) -> None:
    data = envelope_ok(tree.client("trace").get("/traces/search", params={"operation": "INSERT orders"}))
    assert data["traces"] == [
        {
            "trace_id": "tree-1",
            "root_service": "t-gateway",
            "root_operation": "GET /checkout",
            "start_time": f"{T0}.000Z",
            "duration_ms": 400.0,
            "span_count": 4,
            "services": ["t-gateway", "t-orders", "t-payments"],
            "error": True,
        }
    ]


def test_jaeger_api(tree: AirisProcess) -> None:
    c = tree.client("trace")
    services = jaeger(c.get("/api/services"))
    assert {"t-gateway", "t-orders", "t-payments"} <= set(services) and services == sorted(services)
    assert jaeger(c.get("/api/services/t-orders/operations")) == [
        "GET /orders",
        "INSERT orders",
        "POST /orders",
    ]
    assert jaeger(c.get("/api/services/no-such-service/operations")) == []
    ops = jaeger(c.get("/api/operations", params={"service": "t-orders", "spanKind": "server"}))
    assert ops == [{"name": "POST /orders", "spanKind": "server"}]
    window = {"start": us("2024-02-01T11:00:00Z"), "end": us("2024-02-01T13:00:00Z")}

    def ids(**params: str) -> list[str]:
        return [t["traceID"] for t in jaeger(c.get("/api/traces", params={**window, **params}))]

    assert ids(service="t-orders") == ["tree-2", "tree-1"]
    assert ids(service="t-orders", limit="1") == ["tree-2"]
    assert ids(service="t-orders", operation="INSERT orders") == ["tree-1"]
    assert ids(service="t-orders", minDuration="250ms") == ["tree-1"]
    assert ids(service="t-orders", maxDuration="50ms") == ["tree-2"]
    assert ids(service="t-payments", tags='{"error":"true"}') == ["tree-1"]
    assert ids(service="t-orders", tags='{"db.system":"postgres","component":"sql"}') == ["tree-1"]
    assert ids(service="t-orders", start=us("2024-02-01T12:00:00.500Z")) == ["tree-2"]

    # the Jaeger UI's compare view: ?traceID=a&traceID=b, in order, missing ones as errors
    listed = jaeger(c.get("/api/traces", params=[("traceID", "tree-2"), ("traceID", "tree-1")]))
    assert [t["traceID"] for t in listed] == ["tree-2", "tree-1"]
    body = c.get("/api/traces", params=[("traceID", "tree-1"), ("traceID", "nope")]).json()
    assert [t["traceID"] for t in body["data"]] == ["tree-1"]
    assert body["errors"] == [{"code": 404, "msg": "trace nope not found", "traceID": "nope"}]
    jaeger(c.get("/api/traces", params=[("traceID", "bad id!")]), 400)

    (trace,) = jaeger(c.get("/api/traces/tree-1"))
    assert trace["traceID"] == "tree-1" and len(trace["spans"]) == 4
    spans = {s["spanID"]: s for s in trace["spans"]}
    assert spans["b"]["references"] == [{"refType": "CHILD_OF", "traceID": "tree-1", "spanID": "a"}]
    assert spans["a"]["references"] == [] and spans["a"]["duration"] == 400_000
    assert {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]} == {
        "t-gateway",
        "t-orders",
        "t-payments",
    }
    assert {"key": "error", "type": "bool", "value": True} in spans["d"]["tags"]
    assert {"key": "span.kind", "type": "string", "value": "client"} in spans["c"]["tags"]


def _random_traces(rng: random.Random) -> list[dict[str, Any]]:
    """30 traces on 2024-05-01, every span starting at its own millisecond (so the order is total)."""
    starts = rng.sample(range(0, 3_600_000), 120)
    spans = []
    for t in range(30):
        for i in range(rng.randint(1, 4)):
            tags: dict[str, Any] = {"http.status_code": rng.choice([200, 404, 500])}
            if rng.random() < 0.5:
                tags["db.system"] = rng.choice(["postgres", "redis"])
            spans.append(
                {
                    "trace_id": f"rnd-{t}",
                    "span_id": f"s{i}",
                    "parent_span_id": "s0" if i else None,
                    "operation_name": rng.choice(["GET /a", "GET /b", "query", "publish"]),
                    "service_name": rng.choice(["rnd-a", "rnd-b", "rnd-c"]),
                    "start_time": 1_714_521_600_000 + starts.pop(),
                    "duration_ms": rng.randint(1, 500),
                    "tags": tags,
                    "error": rng.random() < 0.1,
                }
            )
    return spans


def _oracle(spans: list[dict[str, Any]], q: dict[str, Any]) -> list[str]:
    """The documented search semantics, written out: one span meets every condition; the trace
    whose matching span started last comes first."""
    newest: dict[str, int] = {}
    for s in spans:
        start, dur = s["start_time"], s["duration_ms"]
        error = s["error"] or s["tags"]["http.status_code"] >= 500
        ok = (
            q.get("service", s["service_name"]) == s["service_name"]
            and q.get("operation", s["operation_name"]) == s["operation_name"]
            and q["from"] <= start <= q["to"]
            and q.get("min", 0) <= dur <= q.get("max", 10**9)
            and all(
                (str(error).lower() == v) if k == "error" else str(s["tags"].get(k)) == v
                for k, v in q["tags"]
            )
        )
        if ok:
            newest[s["trace_id"]] = max(newest.get(s["trace_id"], -1), start)
    return sorted(newest, key=lambda t: -newest[t])[: q.get("limit", 20)]


def test_search_agrees_with_a_brute_force_oracle(airis: AirisProcess) -> None:
    rng = random.Random(7)
    spans = _random_traces(rng)
    c = airis.client("trace")
    assert envelope_ok(c.post("/traces", json={"spans": spans}), 201) == {"accepted": len(spans)}
    day = 1_714_521_600_000
    for _ in range(80):
        lo = day + rng.choice([0, rng.randint(0, 3_600_000)])
        q: dict[str, Any] = {
            "from": lo,
            "to": rng.choice([day + 3_600_000, rng.randint(lo, day + 3_600_000)]),
        }
        if rng.random() < 0.5:
            q["service"] = rng.choice(["rnd-a", "rnd-b", "rnd-c"])
        if rng.random() < 0.3:
            q["operation"] = rng.choice(["GET /a", "GET /b", "query", "publish"])
        if rng.random() < 0.3:
            q["min"] = rng.randint(1, 500)
        if rng.random() < 0.3:
            q["max"] = rng.randint(q.get("min", 1), 500)
        q["tags"] = rng.sample(
            [("error", "true"), ("http.status_code", "404"), ("db.system", "redis")], rng.choice([0, 0, 1, 2])
        )
        if rng.random() < 0.3:
            q["limit"] = rng.randint(1, 5)
        params = {"from": str(q["from"]), "to": str(q["to"])}
        jparams = {"start": str(q["from"] * 1000), "end": str(q["to"] * 1000)}
        for key, name, jname in (
            ("service", "service", "service"),
            ("operation", "operation", "operation"),
            ("limit", "limit", "limit"),
        ):
            if key in q:
                params[name] = jparams[jname] = str(q[key])
        if "min" in q:
            params["min_duration"] = jparams["minDuration"] = f"{q['min']}ms"
        if "max" in q:
            params["max_duration"] = jparams["maxDuration"] = f"{q['max']}ms"
        if q["tags"]:
            params["tags"] = ",".join(f"{k}:{v}" for k, v in q["tags"])
            jparams["tags"] = orjson.dumps(dict(q["tags"])).decode()
        want = _oracle(spans, q)
        got = [t["trace_id"] for t in envelope_ok(c.get("/traces/search", params=params))["traces"]]
        assert got == want, params
        if "service" in q:  # Jaeger's search wants a service
            assert [t["traceID"] for t in jaeger(c.get("/api/traces", params=jparams))] == want, jparams


def test_zipkin_v2_round_trip(airis: AirisProcess) -> None:
    c = airis.client("trace")
    trace_id = "5af7183fb1d4cf5f5af7183fb1d4cf5f"
    body = [
        {
            "traceId": trace_id,
            "id": "6b221d5bc9e6496c",
            "name": "get /api",
            "kind": "SERVER",
            "timestamp": 1_706_788_800_000_000,
            "duration": 207_000,
            "localEndpoint": {"serviceName": "zipkin-frontend", "ipv4": "192.0.2.1"},
            "tags": {"http.method": "GET", "http.path": "/api"},
            "annotations": [{"timestamp": 1_706_788_800_100_000, "value": "cache miss"}],
        },
        {
            "traceId": trace_id,
            "parentId": "6b221d5bc9e6496c",
            "id": "5b4185666d50f68b",
            "name": "select",
            "kind": "CLIENT",
            "timestamp": 1_706_788_800_010_000,
            "duration": 50_000,
            "localEndpoint": {"serviceName": "zipkin-frontend"},
            "remoteEndpoint": {"serviceName": "zipkin-db", "port": 5432},
            "tags": {"error": "timeout"},
        },
    ]
    resp = c.post("/api/v2/spans", json=body)
    assert resp.status_code == 202 and resp.content == b""
    view = envelope_ok(c.get(f"/traces/{trace_id}"))
    assert (view["root_operation"], view["span_count"], view["duration_ms"]) == ("get /api", 2, 207.0)
    root, child = view["spans"]
    assert root["kind"] == "server" and root["start_time"] == "2024-02-01T12:00:00.000Z"
    assert root["children"] == ["5b4185666d50f68b"] and root["logs"][0]["message"] == "cache miss"
    assert child["error"] is True and child["tags"]["peer.service"] == "zipkin-db"
    assert child["tags"]["net.peer.port"] == 5432
    assert jaeger(c.get("/api/services/zipkin-frontend/operations")) == ["get /api", "select"]
    details = envelope_error(c.post("/api/v2/spans", json={"traceId": trace_id}), 400)
    assert details["field"] == "body"
    details = envelope_error(c.post("/api/v2/spans", json=[{**body[0], "id": "bad id"}]), 400)
    assert details == {"field": "id", "index": 0}


# -- bad input ------------------------------------------------------------------------------------


def _otlp_request(trace_id: bytes, span_ids: list[bytes], *, service: str, start_ns: int) -> bytes:
    spans = [
        PbSpan(
            trace_id=trace_id,
            span_id=sid,
            name=f"op-{i}",
            kind=PbSpan.SPAN_KIND_SERVER,
            start_time_unix_nano=start_ns + i * 1_000_000,
            end_time_unix_nano=start_ns + i * 1_000_000 + 500,
            attributes=[KeyValue(key="i", value=AnyValue(int_value=i))],
        )
        for i, sid in enumerate(span_ids)
    ]
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    return ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()


def test_bad_input_gets_4xx_and_harms_nothing(airis: AirisProcess) -> None:
    c = airis.client("trace")
    keep = {**SEED_SPAN, "trace_id": "keep-me", "service_name": "keeper"}
    envelope_ok(c.post("/traces", json=keep), 201)

    def span_error(span: dict[str, Any]) -> dict[str, Any]:
        return envelope_error(c.post("/traces", json=span), 400)

    assert (
        span_error({**SEED_SPAN, "end_time": "2024-01-15T10:29:59Z", "duration_ms": None})["field"]
        == "end_time"
    )
    assert span_error({**SEED_SPAN, "duration_ms": -5, "end_time": None})["field"] == "duration_ms"
    assert span_error({**SEED_SPAN, "duration_ms": 999})["field"] == "duration_ms"  # disagrees with the times
    assert span_error({**SEED_SPAN, "trace_id": "has space"})["field"] == "trace_id"
    assert span_error({**SEED_SPAN, "trace_id": "x" * 65})["field"] == "trace_id"
    assert span_error({**SEED_SPAN, "span_id": ""})["field"] == "span_id"
    assert span_error({**SEED_SPAN, "span_id": 7})["field"] == "span_id"
    assert span_error({**SEED_SPAN, "parent_span_id": "span_001"})["field"] == "parent_span_id"
    assert span_error({**SEED_SPAN, "parent_span_id": "no/slash"})["field"] == "parent_span_id"
    assert span_error({**SEED_SPAN, "start_time": "half past ten"})["field"] == "start_time"
    assert span_error({k: v for k, v in SEED_SPAN.items() if k != "service_name"})["field"] == "service_name"
    assert span_error({**SEED_SPAN, "servce_name": "typo"})["field"] == "servce_name"
    assert span_error({**SEED_SPAN, "tags": {"nested": {"a": 1}}})["field"] == "tags.nested"
    assert span_error({**SEED_SPAN, "logs": [{"message": "no time"}]})["field"] == "logs[0].timestamp"
    details = envelope_error(
        c.post("/traces", json={"spans": [SEED_SPAN, {**SEED_SPAN, "span_id": "a b"}]}), 400
    )
    assert details == {"field": "span_id", "index": 1}
    envelope_error(c.post("/traces", json={"spans": []}), 400)
    envelope_error(c.post("/traces", content=b"{oops", headers={"Content-Type": "application/json"}), 400)
    envelope_error(c.post("/traces", content=b"x" * (11 * 1024 * 1024)), 413, "PAYLOAD_TOO_LARGE")

    for params, field in [
        ({"min_duration": "fast"}, "min_duration"),
        ({"max_duration": "-1s"}, "max_duration"),
        ({"min_duration": "2s", "max_duration": "1s"}, "max_duration"),
        ({"tags": "error"}, "tags"),
        ({"tags": "error:true,"}, "tags"),
        ({"tags": ":x"}, "tags"),
        ({"tags": "{not json"}, "tags"),
        ({"limit": "0"}, "limit"),
        ({"limit": "lots"}, "limit"),
        ({"from": "noon"}, "from"),
        ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "to"),
        ({"colour": "red"}, "colour"),
    ]:
        assert envelope_error(c.get("/traces/search", params=params), 400)["field"] == field, params
    assert envelope_error(c.get("/traces/no-such-trace"), 404, "NOT_FOUND") == {"trace_id": "no-such-trace"}
    assert envelope_error(c.get("/traces/bad%20id!"), 400)["field"] == "trace_id"

    # Jaeger's API answers in its own shape
    jaeger(c.get("/api/traces/no-such-trace"), 404)
    jaeger(c.get("/api/traces/bad%20id!"), 400)
    for params in (
        {"minDuration": "fast"},
        {"tags": "error"},
        {"start": "yesterday"},
        {"limit": "-1"},
        {"service": "x", "colour": "red"},
    ):
        jaeger(c.get("/api/traces", params=params), 400)
    jaeger(c.get("/api/operations"), 400)

    # OTLP answers errors with google.rpc.Status, encoded like the request
    resp = c.post(
        "/v1/traces",
        content=b"\x0a\xff\xff\xff\xff\x0fgarbage",
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(resp.content)
    assert status.code == 3 and status.message
    for body in (
        b"{oops",
        b'{"resourceSpans": 5}',
        b"[]",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12}]}]}]}',
    ):
        resp = c.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, body
        assert resp.headers["content-type"] == "application/json"
        err = resp.json()
        assert err["code"] == 3 and isinstance(err["message"], str) and err["message"], body
    resp = c.post("/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415 and resp.json()["code"] == 3
    resp = c.post(
        "/v1/traces",
        content=b"not gzip",
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 400 and Status.FromString(resp.content).message

    # a span that breaks a rule is rejected alone: partial success
    good, bad = b"\x01" * 8, b"\x00" * 8
    resp = c.post(
        "/v1/traces",
        content=_otlp_request(
            b"\x0a" * 16, [good, bad], service="otlp-partial", start_ns=1_706_788_800_000_000_000
        ),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 200
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    partial = ExportTraceServiceResponse.FromString(resp.content).partial_success
    assert partial.rejected_spans == 1 and "spanId" in partial.error_message
    assert envelope_ok(c.get("/traces/" + "0a" * 16))["span_count"] == 1

    # nothing stored before was harmed, nothing from a refused request was stored
    assert envelope_ok(c.get("/traces/keep-me"))["spans"][0]["service_name"] == "keeper"
    found = envelope_ok(c.get("/traces/search", params={"service": "user-api"}))
    assert found["traces"] == []
    assert "Traceback" not in airis.log()


# -- self-tracing ----------------------------------------------------------------------------------


def wait_for(fetch: Any, *, timeout: float = 10.0) -> Any:
    """Poll until fetch() returns something truthy: self-spans are flushed off the request path."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_self_tracing_finds_metrics_service(tmp_path: Path) -> None:
    airis = AirisProcess(
        tmp_path / "data",
        role="metrics,trace",
        env={"ENABLE_DISTRIBUTED_TRACING": "true", "JAEGER_SAMPLING_RATE": "1.0"},
        extra_args=["--set", "tracing.flush_interval_secs=0.2"],
    ).start()
    try:
        m, t = airis.client("metrics"), airis.client("trace")
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        unsampled = "0af7651916cd43dd8448eb211c80319c"
        envelope_ok(
            m.post(
                "/metrics",
                json={"name": "cpu.usage", "value": 1.0},
                headers={"traceparent": f"00-{unsampled}-b7ad6b7169203331-00"},
            ),
            201,
        )
        envelope_ok(
            m.post(
                "/metrics",
                json={"name": "cpu.usage", "value": 75.5},
                headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
            ),
            201,
        )
        envelope_ok(m.post("/metrics", json={"name": "cpu.usage", "value": 80.0}), 201)

        # the seed's Jaeger UI example: Service metrics-service, Operation POST /metrics
        def search() -> list[dict[str, Any]]:
            return envelope_ok(
                t.get("/traces/search", params={"service": "metrics-service", "operation": "POST /metrics"})
            )["traces"]

        traces = wait_for(lambda: len(search()) >= 2 and search())
        assert len(traces) == 2, traces
        assert {(x["root_service"], x["root_operation"]) for x in traces} == {
            ("metrics-service", "POST /metrics")
        }

        joined = envelope_ok(t.get(f"/traces/{caller_trace}"))
        (span,) = joined["spans"]
        assert span["parent_span_id"] == caller_span and span["kind"] == "server"
        assert span["tags"]["http.method"] == "POST" and span["tags"]["http.status_code"] == 201
        envelope_error(t.get(f"/traces/{unsampled}"), 404, "NOT_FOUND")  # the caller said: not sampled

        assert "metrics-service" in jaeger(t.get("/api/services"))
        assert "POST /metrics" in jaeger(t.get("/api/services/metrics-service/operations"))
        now_us = time.time_ns() // 1000
        found = jaeger(
            t.get(
                "/api/traces",
                params={
                    "service": "metrics-service",
                    "operation": "POST /metrics",
                    "start": str(now_us - 3_600_000_000),
                    "end": str(now_us + 60_000_000),
                    "lookback": "1h",
                    "limit": "20",
                },
            )
        )
        assert caller_trace in {x["traceID"] for x in found} and len(found) == 2
        assert "Traceback" not in airis.log()
    finally:
        airis.stop()


PARAM_NAMES = [
    "service",
    "operation",
    "from",
    "to",
    "min_duration",
    "max_duration",
    "tags",
    "limit",
    "start",
    "end",
    "minDuration",
    "maxDuration",
]
PARAM_VALUES = st.text(max_size=12) | st.sampled_from(
    ["500ms", "1.5s", "error:true", '{"a":"b"}', "10", "0", "-1"]
)


@settings(max_examples=30)
@given(
    params=st.dictionaries(st.sampled_from(PARAM_NAMES), PARAM_VALUES, max_size=4),
    path=st.sampled_from(["/traces/search", "/api/traces"]),
)
def test_any_search_is_answered_or_refused(airis: AirisProcess, params: dict[str, str], path: str) -> None:
    resp = airis.client("trace").get(path, params=params)
    assert resp.status_code in (200, 400), resp.text
    if path == "/api/traces":
        jaeger(resp, resp.status_code)
    elif resp.status_code == 200:
        envelope_ok(resp)
    else:
        assert envelope_error(resp, 400)["field"] in PARAM_NAMES


@settings(max_examples=30)
@given(
    body=st.binary(max_size=300),
    target=st.sampled_from(
        [
            ("/traces", "application/json"),
            ("/v1/traces", "application/x-protobuf"),
            ("/v1/traces", "application/json"),
            ("/api/v2/spans", "application/json"),
        ]
    ),
)
def test_no_body_gets_a_5xx(airis: AirisProcess, body: bytes, target: tuple[str, str]) -> None:
    path, ctype = target
    resp = airis.client("trace").post(path, content=body, headers={"Content-Type": ctype})
    assert resp.status_code < 500, resp.text


# -- durability -----------------------------------------------------------------------------------


def test_kill_9_right_after_ack_loses_no_span(tmp_path: Path) -> None:
    proc = AirisProcess(tmp_path / "data", role="trace").start()
    start_ns = time.time_ns() - 3_600_000_000_000  # an hour ago: inside the default retention
    try:
        c = proc.client("trace")
        for i in range(10):
            spans = [
                {
                    "trace_id": f"durable-{i}",
                    "span_id": f"s{j}",
                    "parent_span_id": f"s{j - 1}" if j else None,
                    "operation_name": f"op {j}",
                    "service_name": "durable",
                    "start_time": start_ns // 1_000_000 + j,
                    "duration_ms": 1,
                }
                for j in range(50)
            ]
            assert envelope_ok(c.post("/traces", json={"spans": spans}), 201) == {"accepted": 50}
        body = _otlp_request(
            b"\xab" * 16, [bytes([k + 1]) * 8 for k in range(20)], service="durable-otlp", start_ns=start_ns
        )
        assert (
            c.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}).status_code
            == 200
        )
        resp = c.post(
            "/api/v2/spans",
            content=orjson.dumps(
                [
                    {
                        "traceId": "cd" * 16,
                        "id": "cd" * 8,
                        "name": "last",
                        "timestamp": start_ns // 1000,
                        "duration": 5,
                        "localEndpoint": {"serviceName": "durable-zipkin"},
                    }
                ]
            ),
        )
        assert resp.status_code == 202
        proc.kill9()
    finally:
        proc.stop()
    again = AirisProcess(tmp_path / "data", role="trace").start()
    try:
        c = again.client("trace")
        for i in range(10):
            view = envelope_ok(c.get(f"/traces/durable-{i}"))
            assert view["span_count"] == 50 and max(s["depth"] for s in view["spans"]) == 49
        assert envelope_ok(c.get("/traces/" + "ab" * 16))["span_count"] == 20
        assert envelope_ok(c.get("/traces/" + "cd" * 16))["root_operation"] == "last"
        found = envelope_ok(c.get("/traces/search", params={"service": "durable", "limit": "100"}))
        assert found["count"] == 10
        assert jaeger(c.get("/api/services")) == ["durable", "durable-otlp", "durable-zipkin"]
        assert "Traceback" not in again.log()
    finally:
        again.stop()
