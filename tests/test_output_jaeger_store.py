"""Jaeger's query API as the trace role's store, tested against a STAND-IN: no Jaeger can be had
offline, so the Jaeger API being read is airisd's own (the trace role serves /api/traces,
/api/services, /api/operations as Jaeger's query service does; airisd/roles/traces.py), in a real
``airisd run`` subprocess fed through the jaeger output's OTLP export, as a real Jaeger would be.

    client --POST /traces--> airisd B --[[outputs.jaeger]] OTLP/HTTP--> airisd A (the stand-in)
                             B's trace role ([stores] trace = "jaeger") --Jaeger query API--> A

B also keeps its own SQLite copy, which serves as the oracle: the store reading A must answer every
query as SQLite answers it on B.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from airisd_plugins.outputs.jaeger.otlp import normalized
from airisd_plugins.outputs.jaeger.query import JaegerQueryStore
from airisd_plugins.outputs.sqlite.traces_store import TraceStore

from airisd.errors import TransientError
from airisd.model import Span
from tests.e2e_helpers import AirisProcess

pytestmark = [pytest.mark.e2e]

BASE = 1_767_225_600  # 2026-01-01T00:00:00Z
START_SECS = 90  # airisd starts in ~1 s; much more on a shared, loaded machine


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def daemon_config(path: Path, *, inputs: list[str], sqlite: bool = True, jaeger: dict[str, Any] | None = None,
                  trace_store: str = "") -> Path:
    """A small config file: the listed inputs, SQLite, an optional [[outputs.jaeger]] table."""
    lines = []
    if trace_store:
        lines += ["[stores]", f"trace = {toml_string(trace_store)}", ""]
    lines += [f"[[inputs.{name}]]" for name in inputs]
    if sqlite:
        lines.append("[[outputs.sqlite]]")
    if jaeger is not None:
        lines.append("[[outputs.jaeger]]")
        for key, value in jaeger.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{toml_string(k)} = {toml_string(v) if isinstance(v, str) else v}"
                                  for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {toml_string(value) if isinstance(value, str) else value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ts(offset_ms: int) -> str:
    secs, ms = divmod(offset_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE + secs)) + f".{ms:03d}Z"


def seed_spans() -> list[dict[str, Any]]:
    """Three traces over three services: the seed's non-hex ids and OTLP-style hex ids, errors,
    typed tags, logs, kinds."""
    return [
        {"trace_id": "abc123def456ghi789", "span_id": "span_001", "operation_name": "POST /api/orders",
         "service_name": "api-gateway", "start_time": ts(0), "end_time": ts(250), "kind": "server",
         "tags": {"http.method": "POST", "http.status_code": 500, "user.vip": True},
         "logs": [{"timestamp": ts(10), "message": "validating", "step": 1}]},
        {"trace_id": "abc123def456ghi789", "span_id": "span_002", "parent_span_id": "span_001",
         "operation_name": "SELECT orders", "service_name": "order-db", "start_time": ts(20), "end_time": ts(120),
         "kind": "client", "tags": {"db.rows": 3, "db.ratio": 0.5}},
        {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
         "operation_name": "GET /api/users", "service_name": "api-gateway", "start_time": ts(1000),
         "end_time": ts(1030), "kind": "server", "tags": {"http.method": "GET", "http.status_code": 200}},
        {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "00f067aa0ba902b7",
         "parent_span_id": "b7ad6b7169203331", "operation_name": "cache get", "service_name": "cache",
         "start_time": ts(1005), "end_time": ts(1007), "tags": {"cache.hit": False}},
        {"trace_id": "trace-three", "span_id": "s3", "operation_name": "GET /api/users", "service_name": "api-gateway",
         "start_time": ts(2000), "end_time": ts(2500), "kind": "server", "error": True,
         "tags": {"http.method": "GET", "error": True}},
    ]


class Pair:
    def __init__(self, standin: AirisProcess, front: AirisProcess, store: JaegerQueryStore, oracle: TraceStore):
        self.standin, self.front, self.store, self.oracle = standin, front, store, oracle


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("jaeger-standin")
    standin = AirisProcess(root / "a", role="trace",
                           config=daemon_config(root / "a.toml", inputs=["otlp_traces", "http_traces"]))
    front: AirisProcess | None = None
    store: JaegerQueryStore | None = None
    try:
        standin.start(timeout=START_SECS)
        auth = standin.auth_headers()
        url = standin.url("trace")
        front = AirisProcess(root / "b", role="trace", config=daemon_config(
            root / "b.toml", inputs=["http_traces"], trace_store="jaeger",
            jaeger={"endpoint": url, "headers": auth, "query_url": url, "query_headers": auth,
                    "flush_interval_secs": 0.1, "retry_max_secs": 1.0}))
        front.start(timeout=START_SECS)
        resp = front.client("trace").post("/traces", json={"spans": seed_spans()})
        assert resp.status_code in (200, 201, 202), resp.text
        store = JaegerQueryStore(url, headers=auth)
        deadline = time.monotonic() + 20
        while len(store.find_trace_ids(limit=100)) < 3:
            assert time.monotonic() < deadline, front.log()[-3000:]
            time.sleep(0.1)
        yield Pair(standin, front, store, TraceStore(root / "b"))
    finally:
        if store is not None:
            store.close()
        if front is not None:
            front.stop()
        standin.stop()


def _expected(spans: list[Span]) -> list[Span]:
    """The spans as read back through Jaeger's model: status ERROR as a tag (see otlp.normalized),
    and no boolean ``error`` tag on an error span (Jaeger adds one to each; it is read as the flag)."""
    out = []
    for span in map(normalized, spans):
        if span.error and span.tags.get("error") is True:
            span = msgspec.structs.replace(span, tags={k: v for k, v in span.tags.items() if k != "error"})
        out.append(span)
    return out


QUERIES: list[dict[str, Any]] = [
    {},
    {"service": "api-gateway"},
    {"service": "api-gateway", "operation": "GET /api/users"},
    {"service": "order-db"},
    {"tags": [("error", "true")]},
    {"tags": [("http.method", "GET")]},
    {"tags": [("http.method", "GET"), ("http.method", "POST")]},
    {"min_duration_ns": 200_000_000},
    {"max_duration_ns": 5_000_000},
    {"from_ns": (BASE + 1) * 10**9, "to_ns": (BASE + 2) * 10**9},
    {"service": "api-gateway", "limit": 1},
    {"service": "nobody"},
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: ",".join(q) or "all")
def test_search_answers_as_sqlite_does(pair: Pair, query: dict[str, Any]) -> None:
    ids = pair.store.find_trace_ids(**query)
    assert ids == pair.oracle.find_trace_ids(**query)
    assert pair.store.search(**query) == pair.oracle.search(**query)
    assert pair.store.summaries(ids) == pair.oracle.summaries(ids)
    assert pair.store.get_traces(ids) == {t: _expected(s) for t, s in pair.oracle.get_traces(ids).items()}


@pytest.mark.parametrize("trace_id", ["abc123def456ghi789", "0af7651916cd43dd8448eb211c80319c", "trace-three"])
def test_get_trace_gives_the_spans_back(pair: Pair, trace_id: str) -> None:
    spans = pair.store.get_trace(trace_id)
    assert spans == _expected(pair.oracle.get_trace(trace_id))
    assert all(s.trace_id == trace_id for s in spans)
    assert pair.store.get_trace("no-such-trace") == []
    assert pair.store.get_trace("not an id!") == []


def test_catalogue(pair: Pair) -> None:
    assert pair.store.services() == pair.oracle.services() == ["api-gateway", "cache", "order-db"]
    for service in pair.store.services():
        assert pair.store.operations(service) == pair.oracle.operations(service)
        assert pair.store.operation_kinds(service) == pair.oracle.operation_kinds(service)
    assert pair.store.operations("api-gateway", span_kind="server") == ["GET /api/users", "POST /api/orders"]


def test_front_daemon_answers_from_the_standin(pair: Pair) -> None:
    """B has ``[stores] trace = "jaeger"``: its seed and Jaeger APIs answer from A's data."""
    client = pair.front.client("trace")
    view = client.get("/traces/abc123def456ghi789").json()["data"]
    assert view["span_count"] == 2 and view["error"] is True
    by_id = {s["span_id"]: s for s in view["spans"]}
    assert by_id["span_002"]["parent_span_id"] == "span_001" and by_id["span_002"]["depth"] == 1
    assert by_id["span_001"]["tags"]["user.vip"] is True
    assert by_id["span_001"]["logs"][0]["message"] == "validating"
    found = client.get("/traces/search", params={"service": "api-gateway", "tags": "error:true"}).json()["data"]
    assert [t["trace_id"] for t in found["traces"]] == ["trace-three", "abc123def456ghi789"]
    assert client.get("/api/services").json()["data"] == ["api-gateway", "cache", "order-db"]
    jaeger = client.get("/api/traces", params={"service": "cache"}).json()["data"]
    assert [t["traceID"] for t in jaeger] == ["0af7651916cd43dd8448eb211c80319c"]
    ops = client.get("/api/operations", params={"service": "order-db"}).json()["data"]
    assert ops == [{"name": "SELECT orders", "spanKind": "client"}]
    health = client.get("/health/detailed").json()["data"]
    assert health["stores"]["jaeger"]["traces"] == {"reachable": True, "query_url": pair.standin.url("trace")}


def test_unreachable_backend_is_transient_and_503(tmp_path: Path) -> None:
    from tests.e2e_helpers import free_port

    store = JaegerQueryStore(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientError, match="ConnectError"):
            store.services()
    finally:
        store.close()
    front = AirisProcess(tmp_path / "c", role="trace", config=daemon_config(
        tmp_path / "c.toml", inputs=[], sqlite=False, trace_store="jaeger",
        jaeger={"query_url": f"http://127.0.0.1:{free_port()}"}))
    try:
        front.start(timeout=START_SECS)
        resp = front.client("trace").get("/traces/search", params={"service": "x"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "STORE_UNAVAILABLE"
        health = front.client("trace").get("/health/detailed").json()["data"]
        assert health["status"] == "degraded" and health["stores"]["jaeger"]["traces"]["reachable"] is False
    finally:
        front.stop()

