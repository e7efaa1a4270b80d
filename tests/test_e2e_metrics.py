"""The metrics role end to end: `airisd run` as a subprocess, real HTTP over loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e_helpers import AirisProcess, require_tool

pytestmark = pytest.mark.e2e


@pytest.fixture
def airis(tmp_path: Path) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path / "data", role="metrics").start()
    yield proc
    proc.stop()


def envelope_ok(resp: httpx.Response, status: int = 200) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is True
    assert set(body) == {"success", "data", "message", "timestamp", "request_id"}
    assert body["request_id"].startswith("req_")
    assert body["timestamp"].endswith("Z")
    return body["data"]


def envelope_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["details"]


def test_seed_metrics_curls(airis: AirisProcess) -> None:
    base = ""
    httpx = airis.client("metrics")
    data = envelope_ok(httpx.post(f"{base}/metrics", json={
        "name": "cpu.usage", "value": 75.5, "timestamp": "2024-01-15T10:30:00Z",
        "labels": {"host": "web-server-01", "region": "us-east-1"}}), 201)
    assert data == {"accepted": 1}
    data = envelope_ok(httpx.post(f"{base}/metrics/batch", json={"metrics": [
        {"name": "memory.usage", "value": 85.2, "labels": {"host": "web-server-01"}},
        {"name": "disk.usage", "value": 45.8, "labels": {"host": "web-server-01", "mount": "/"}}]}), 201)
    assert data == {"accepted": 2}

    raw = envelope_ok(httpx.get(f"{base}/metrics/query", params={
        "name": "cpu.usage", "from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"}))
    assert raw["series"] == [{"labels": {"host": "web-server-01", "region": "us-east-1"},
                              "points": [{"timestamp": "2024-01-15T10:30:00.000Z", "value": 75.5}]}]
    agg = envelope_ok(httpx.get(f"{base}/metrics/query", params={
        "name": "cpu.usage", "from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z", "interval": "1m"}))
    assert agg["interval"] == "1m"
    assert agg["series"][0]["buckets"] == [{"timestamp": "2024-01-15T10:30:00.000Z", "avg": 75.5, "min": 75.5,
                                            "max": 75.5, "sum": 75.5, "count": 1}]
    # No from/to: the last hour. The batch points had no timestamp, so they are "now".
    labelled = envelope_ok(httpx.get(f"{base}/metrics/query", params={"name": "disk.usage",
                                                                      "labels": "host:web-server-01"}))
    assert labelled["series"][0]["labels"] == {"host": "web-server-01", "mount": "/"}
    none = envelope_ok(httpx.get(f"{base}/metrics/query", params={"name": "disk.usage", "labels": "host:other"}))
    assert none["series"] == []
    listing = envelope_ok(httpx.get(f"{base}/metrics", params={"from": "2024-01-15T00:00:00Z",
                                                               "to": "2024-01-15T23:59:59Z"}))
    assert listing["names"] == ["cpu.usage"] and listing["total"] == 1


def test_bad_input_gets_4xx_and_keeps_data(airis: AirisProcess) -> None:
    base = ""
    httpx = airis.client("metrics")
    envelope_ok(httpx.post(f"{base}/metrics", json={"name": "keep.me", "value": 1}), 201)
    cases = [
        (b"{not json", 400, "VALIDATION_ERROR"),
        (b'{"name": "x", "value": "abc"}', 400, "VALIDATION_ERROR"),
        (b'{"name": "x", "value": 1e999}', 400, "VALIDATION_ERROR"),
        (b'{"name": "", "value": 1}', 400, "VALIDATION_ERROR"),
        (b'{"name": "x", "value": 1, "timestamp": "yesterday"}', 400, "VALIDATION_ERROR"),
        (b'{"name": "x", "value": 1, "timestamp": "9999-01-01T00:00:00Z"}', 400, "VALIDATION_ERROR"),
        (b'{"name": "x", "value": 1, "labels": {"a": {"b": 1}}}', 400, "VALIDATION_ERROR"),
        (b'[]', 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        envelope_error(httpx.post(f"{base}/metrics", content=body,
                                  headers={"Content-Type": "application/json"}), status, code)
    details = envelope_error(httpx.post(f"{base}/metrics/batch", json={"metrics": [
        {"name": "ok", "value": 1}, {"name": "bad", "value": "x"}]}), 400, "VALIDATION_ERROR")
    assert details["index"] == 1 and details["field"] == "value"
    big = b'{"name": "x", "value": 1, "labels": {"k": "' + b"v" * (11 * 1024 * 1024) + b'"}}'
    envelope_error(httpx.post(f"{base}/metrics", content=big), 413, "PAYLOAD_TOO_LARGE")
    envelope_error(httpx.get(f"{base}/metrics/query", params={"name": "x", "interval": "fortnight"}), 400,
                   "VALIDATION_ERROR")
    envelope_error(httpx.get(f"{base}/metrics/query", params={"name": "x", "from": "2024-02-01T00:00:00Z",
                                                              "to": "2024-01-01T00:00:00Z"}), 400, "VALIDATION_ERROR")
    envelope_error(httpx.get(f"{base}/metrics/query", params={"name": "x", "bogus": "1"}), 400, "VALIDATION_ERROR")
    envelope_error(httpx.get(f"{base}/metrics/query"), 400, "VALIDATION_ERROR")
    envelope_error(httpx.get(f"{base}/no/such/route"), 404, "NOT_FOUND")
    kept = envelope_ok(httpx.get(f"{base}/metrics/query", params={"name": "keep.me"}))
    assert len(kept["series"][0]["points"]) == 1
    assert "Traceback" not in airis.log()


def test_kill_9_right_after_ack_loses_nothing(tmp_path: Path) -> None:
    proc = AirisProcess(tmp_path / "data", role="metrics").start()
    base = ""
    sent = 0
    t0 = (time.time_ns() // 1_000_000) - 3_600_000  # ms, an hour ago: inside retention
    with proc.client("metrics") as client:
        for i in range(50):
            batch = [{"name": "durable", "value": float(i * 100 + j), "timestamp": t0 + i * 100 + j}
                     for j in range(100)]
            assert client.post(f"{base}/metrics/batch", json={"metrics": batch}).status_code == 201
            sent += len(batch)
        assert client.post(f"{base}/metrics", json={"name": "durable", "value": -1.0,
                                                    "timestamp": t0 + 100_000}).status_code == 201
        sent += 1
    proc.kill9()
    proc.stop()
    again = AirisProcess(tmp_path / "data", role="metrics").start()
    try:
        data = envelope_ok(again.client("metrics").get("/metrics/query", params={
            "name": "durable", "from": str(t0 - 1000), "to": str(t0 + 200_000)}))
        assert sum(len(s["points"]) for s in data["series"]) == sent
    finally:
        again.stop()


def test_sigterm_stops_cleanly_and_quickly(airis: AirisProcess) -> None:
    airis.client("metrics").post("/metrics", json={"name": "x", "value": 1})
    started = time.monotonic()
    assert airis.terminate(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "airisd stopped" in airis.log()


def test_prometheus_endpoint_passes_promtool(airis: AirisProcess) -> None:
    promtool = require_tool("promtool")
    base = ""
    httpx = airis.client("metrics")
    httpx.post(f"{base}/metrics", json={"name": "x", "value": 1})
    httpx.post(f"{base}/metrics", json={"name": "x", "value": "bad"})
    text = httpx.get(f"{base}/metrics/prometheus").text
    for needle in ("airisd_http_requests_total", "airisd_points_ingested_total", "airisd_points_rejected_total",
                   "airisd_output_queue_items", "airisd_output_write_seconds_bucket", "airisd_build_info"):
        assert needle in text, needle
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_busy_port_is_a_clear_error(airis: AirisProcess, tmp_path: Path) -> None:
    other = AirisProcess(tmp_path / "other", role="metrics", ports=dict(airis.ports)).start(wait=False)
    assert other.proc is not None
    assert other.proc.wait(timeout=20) == 2
    assert "cannot listen on" in other.log()
