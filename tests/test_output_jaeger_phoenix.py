"""The jaeger output against a real OTLP/HTTP receiver: Arize Phoenix (no Jaeger can be had
offline). Spans written through the output are read back from Phoenix's REST API with their names,
ids, parents, typed attributes, status and events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airisd_plugins.outputs.jaeger import JaegerOutput
from airisd_plugins.outputs.jaeger.otlp import wire_span_id, wire_trace_id

from airisd.model import Batch, Signal, Span, SpanLog
from airisd.testing import make_context
from tests.servers import ServerProcess, phoenix_server, running

pytestmark = [pytest.mark.services]

NOW = time.time_ns()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def phoenix_spans(url: str, *, want: int, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Phoenix's spans of the default project by span id, once at least ``want`` are there.
    Phoenix answers 200 before its background insert (100 spans per transaction, ~100-1000 spans/s
    here), hence the wait."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            found.clear()
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
                body = client.get("/v1/projects/default/spans", params=params).json()
                found.update({s["context"]["span_id"]: s for s in body["data"]})
                cursor = body.get("next_cursor")
                if not cursor:
                    break
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.25)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(phoenix_server(tmp_path_factory.mktemp("phoenix"))) as server:
        yield server


async def _write(url: str, spans: list[Span], tmp_path: Path, **options: Any) -> None:
    config = JaegerOutput.Config(endpoint=url, **options)
    config.validate()
    output = JaegerOutput(config, make_context(tmp_path, name="jaeger"))
    await output.start()
    try:
        await output.write(Batch(Signal.TRACES, spans))
    finally:
        await output.shutdown()


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_spans_arrive_at_phoenix_with_their_fields(phoenix: ServerProcess, tmp_path: Path,
                                                         compression: str) -> None:
    case = "0" if compression == "none" else "1"
    trace = TRACE[:-1] + case
    root = Span(trace_id=trace, span_id="00f067aa0ba902b" + case, operation_name="GET /orders", service_name="api",
                start_ts=NOW, end_ts=NOW + 5_000_000, kind="server", error=True,
                tags={"http.status_code": 503, "http.method": "GET", "retry.ratio": 0.25, "cached": False,
                      "otel.status_description": "upstream unavailable"},
                logs=[SpanLog(ts=NOW + 1_000_000, message="cache miss", fields={"key": "orders:7"})])
    child = Span(trace_id=trace, span_id="span_002_" + compression, parent_span_id=root.span_id,
                 operation_name="SELECT orders", service_name="db", start_ts=NOW + 1000, end_ts=NOW + 2_000_000,
                 kind="client", tags={"db.rows": 7})
    before = len(phoenix_spans(phoenix.url, want=0, timeout=0))
    await _write(phoenix.url, [root, child], tmp_path, compression=compression)
    spans = phoenix_spans(phoenix.url, want=before + 2)
    got_root = spans[root.span_id]
    assert got_root["name"] == "GET /orders"
    assert got_root["context"]["trace_id"] == trace
    assert got_root["parent_id"] is None
    assert (got_root["status_code"], got_root["status_message"]) == ("ERROR", "upstream unavailable")
    assert got_root["attributes"] == {"http.status_code": 503, "http.method": "GET", "retry.ratio": 0.25,
                                      "cached": False}
    assert [(e["name"], e["attributes"]) for e in got_root["events"]] == [("cache miss", {"key": "orders:7"})]
    got_child = spans[wire_span_id(child.span_id).hex()]  # a non-hex id travels as its digest ...
    assert got_child["name"] == "SELECT orders"
    assert got_child["parent_id"] == root.span_id
    assert got_child["status_code"] == "UNSET"
    assert got_child["attributes"] == {"db.rows": 7, "airisd.span_id": child.span_id}  # ... and verbatim
    assert got_child["context"]["trace_id"] == wire_trace_id(trace).hex() == trace


@pytest.mark.anyio
async def test_one_batch_of_many_services_and_traces(phoenix: ServerProcess, tmp_path: Path) -> None:
    before = len(phoenix_spans(phoenix.url, want=0, timeout=0))
    batch = [Span(trace_id=f"{i // 10 + 1:032x}", span_id=f"{i + 1:016x}", operation_name=f"op-{i % 7}",
                  service_name=f"svc-{i % 3}", start_ts=NOW + i, end_ts=NOW + i + 1000, tags={"i": i})
             for i in range(500)]
    await _write(phoenix.url, batch, tmp_path)
    spans = phoenix_spans(phoenix.url, want=before + 500, timeout=90)
    got = {sid: s for sid, s in spans.items() if s["name"].startswith("op-")}
    assert len(got) == 500
    assert {got[s.span_id]["attributes"]["i"] for s in batch} == set(range(500))
