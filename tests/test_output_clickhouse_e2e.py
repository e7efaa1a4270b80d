"""The clickhouse output end to end: a real `airisd run` whose metrics role answers from ClickHouse
(`[stores] metrics = "clickhouse"`), the chdb engine behind our HTTP fixture over real sockets.

The fault tests stop ClickHouse for AIRISD_FAULT_PAUSE_SECS (default 30) mid-stream, or kill -9
airisd mid-stream, and check that every acknowledged point arrives with its value intact. Duplicates
are bounded: ClickHouse drops a re-sent identical INSERT block (non_replicated_deduplication_window)
and the metrics table keeps one row per (series, ns) under FINAL."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest

from tests.e2e_helpers import AirisProcess
from tests.servers import ServerProcess, chdb_server

pytestmark = [pytest.mark.e2e, pytest.mark.services]

CONFIG = """
[auth]
rate_limit_per_minute = 0  # the streams here post ~100 requests a second
[agent]
role = "metrics"
[[inputs.http_metrics]]
[[outputs.clickhouse]]
host = "127.0.0.1"
port = {port}
database = "e2e"
flush_interval_secs = 0.05
batch_size = 500
retry_initial_secs = 0.05
retry_max_secs = 1.0
connect_timeout_secs = 2.0
send_receive_timeout_secs = 10.0
{buffer}
[stores]
metrics = "clickhouse"
"""
DISK_BUFFER = """[outputs.clickhouse.buffer]
type = "disk"
"""
PAUSE_SECS = float(os.environ.get("AIRISD_FAULT_PAUSE_SECS", "30"))
BASE_MS = (int(time.time()) - 3600) * 1000  # an hour ago: inside the query range and the TTL


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[ServerProcess]:
    server = chdb_server(tmp_path / "chdb")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


def daemon(tmp_path: Path, server: ServerProcess, *, disk: bool) -> AirisProcess:
    cfg = tmp_path / "airisd.toml"
    cfg.write_text(CONFIG.format(port=server.port, buffer=DISK_BUFFER if disk else ""))
    return AirisProcess(tmp_path / "data", role="metrics", config=cfg)


def batch(worker: int, start: int, n: int) -> dict[str, object]:
    """Points whose value is their sequence number and whose ms timestamp is unique to them."""
    return {"metrics": [{"name": "fault", "value": v, "labels": {"w": str(worker)}, "timestamp": BASE_MS + v}
                        for v in range(start, start + n)]}


def stored(server: ServerProcess) -> tuple[dict[int, float], int]:
    """({timestamp ms: value} as the store answers (FINAL), rows before deduplication)."""
    client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port, autogenerate_session_id=False,
                                           dedicated_pool=True)
    try:
        rows = client.query("SELECT toUnixTimestamp64Milli(timestamp), value FROM e2e.metrics FINAL "
                            "WHERE name = 'fault'").result_rows
        raw = int(client.query("SELECT count() FROM e2e.metrics WHERE name = 'fault'").result_rows[0][0])
        return {int(ts): float(v) for ts, v in rows}, raw
    except Exception:  # down or not yet created
        return {}, 0
    finally:
        client.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Streamer:
    """Clients posting batches in a loop; records what was acknowledged (201)."""

    def __init__(self, airis: AirisProcess, workers: int = 2, size: int = 20) -> None:
        self.airis, self.size = airis, size
        self.acked: list[int] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]

    def __enter__(self) -> Streamer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, worker: int) -> None:
        client = httpx.Client(base_url=self.airis.url("metrics"), headers=self.airis.auth_headers(), timeout=30)
        start = worker * 1_000_000
        try:
            while not self.stop_flag.is_set():
                try:
                    resp = client.post("/metrics/batch", json=batch(worker, start, self.size))
                except httpx.HTTPError:
                    return  # the daemon died under us
                if resp.status_code == 201:
                    with self.lock:
                        self.acked.extend(range(start, start + self.size))
                    start += self.size
                else:  # 503 while a buffer is full: wait as Retry-After says, send the same again
                    with self.lock:
                        self.refused += 1
                    time.sleep(float(resp.headers.get("Retry-After", "1")))
        finally:
            client.close()

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def assert_all_arrived(server: ServerProcess, acked: list[int], timeout: float) -> tuple[int, int]:
    want = {BASE_MS + v: float(v) for v in acked}
    wait_for(lambda: want.keys() <= stored(server)[0].keys(), timeout, f"{len(want)} acknowledged points")
    got, raw = stored(server)
    assert {ts: got[ts] for ts in want} == want  # values intact
    return len(got), raw


def test_metrics_posted_are_answered_from_clickhouse(tmp_path: Path, chdb: ServerProcess) -> None:
    airis = daemon(tmp_path, chdb, disk=False).start()
    try:
        client = airis.client("metrics")
        now_ms = int(time.time() * 1000)
        points = [{"name": "e2e_cpu", "value": i * 1.5, "labels": {"host": f"h{i % 2}"}, "timestamp": now_ms - i * 1000}
                  for i in range(10)]
        assert client.post("/metrics/batch", json={"metrics": points}).status_code == 201

        def answered() -> list[dict[str, Any]]:
            resp = client.get("/metrics/query", params={"name": "e2e_cpu", "labels": "host:h1"})
            assert resp.status_code == 200, resp.text
            return list(resp.json()["data"]["series"])

        wait_for(lambda: bool(answered()), 20, "the points in ClickHouse")
        series = answered()
        assert [s["labels"] for s in series] == [{"host": "h1"}]
        assert sorted(p["value"] for p in series[0]["points"]) == [1.5, 4.5, 7.5, 10.5, 13.5]
        listing = client.get("/metrics", params={"name": "e2e_cpu"}).json()["data"]
        assert listing["total"] == 2 and listing["names"] == ["e2e_cpu"]
        buckets = client.get("/metrics/query", params={"name": "e2e_cpu", "interval": "1h"}).json()["data"]
        assert sum(b["count"] for s in buckets["series"] for b in s["buckets"]) == 10
    finally:
        airis.stop()


def test_queries_answer_503_while_clickhouse_is_down(tmp_path: Path, chdb: ServerProcess) -> None:
    airis = daemon(tmp_path, chdb, disk=False).start()
    try:
        chdb.stop()
        resp = airis.client("metrics").get("/metrics/query", params={"name": "x"})
        assert resp.status_code == 503, resp.text
        chdb.start()
        assert airis.client("metrics").get("/metrics/query", params={"name": "x"}).status_code == 200
    finally:
        airis.stop()


@pytest.mark.parametrize("disk", [True, False], ids=["disk-buffer", "memory-buffer"])
def test_clickhouse_stopped_mid_stream_loses_nothing_acknowledged(tmp_path: Path, chdb: ServerProcess,
                                                                  disk: bool) -> None:
    airis = daemon(tmp_path, chdb, disk=disk).start()
    try:
        with Streamer(airis) as s:
            wait_for(lambda: s.count() >= 1000, 60, "1000 acknowledged points")
            chdb.stop()  # SIGTERM: the fixture closes the engine; its data stays on disk
            during = s.count()
            time.sleep(PAUSE_SECS)
            chdb.start()  # same port, same data path
            wait_for(lambda: s.count() >= during + 1000, 120, "acknowledgements after the restart")
        unique, raw = assert_all_arrived(chdb, s.acked, 180)
        print(f"clickhouse stopped {PAUSE_SECS:.0f}s ({'disk' if disk else 'memory'} buffer): acked={s.count()} "
              f"acked_before_stop={during} stored={unique} rows_before_dedup={raw} refused_503={s.refused}")
        assert raw - unique <= 500  # at most one batch in flight stored twice
    finally:
        airis.stop()


def test_kill_9_airisd_mid_stream_loses_nothing_acknowledged(tmp_path: Path, chdb: ServerProcess) -> None:
    airis = daemon(tmp_path, chdb, disk=True).start()
    with Streamer(airis) as s:
        wait_for(lambda: s.count() >= 2000, 60, "2000 acknowledged points")
        airis.kill9()
    airis.stop()
    again = AirisProcess(airis.data_dir, role="metrics", config=airis.config).start()
    try:
        unique, raw = assert_all_arrived(chdb, s.acked, 120)
        print(f"airisd kill -9 (disk buffer): acked={s.count()} stored={unique} rows_before_dedup={raw}")
        assert raw - unique <= 500
    finally:
        again.stop()


LOG_CONFIG = """
[auth]
rate_limit_per_minute = 0  # the streams here post ~100 requests a second
[agent]
role = "log"
[[inputs.http_logs]]
[[outputs.clickhouse]]
host = "127.0.0.1"
port = {port}
database = "e2e_logs"
flush_interval_secs = 0.05
[stores]
log = "clickhouse"
"""


def test_logs_posted_are_searched_in_clickhouse(tmp_path: Path, chdb: ServerProcess) -> None:
    cfg = tmp_path / "airisd.toml"
    cfg.write_text(LOG_CONFIG.format(port=chdb.port))
    airis = AirisProcess(tmp_path / "data", role="log", config=cfg).start()
    try:
        client = airis.client("log")
        logs = [{"level": "ERROR", "message": "Database connection failed", "service": "user-api",
                 "trace_id": "abc123", "http.status": 500},
                {"level": "INFO", "message": "user logged in", "service": "auth"}]
        assert client.post("/logs/batch", json={"logs": logs}).status_code == 201

        def search(q: str) -> list[dict[str, Any]]:
            resp = client.get("/logs/search", params={"q": q})
            assert resp.status_code == 200, resp.text
            return list(resp.json()["data"]["items"])

        wait_for(lambda: len(search("")) == 2, 20, "the logs in ClickHouse")
        hits = search('"connection failed" AND level:error AND http.status:500')
        assert [h["message"] for h in hits] == ["Database connection failed"]
        assert search("service:AUTH")[0]["message"] == "user logged in"
        page = client.get("/logs", params={"sort": "timestamp:asc", "size": 1}).json()["data"]
        assert page["total"] == 2 and len(page["items"]) == 1
    finally:
        airis.stop()


TRACE_CONFIG = """
[auth]
rate_limit_per_minute = 0  # the streams here post ~100 requests a second
[agent]
role = "trace"
[[inputs.http_traces]]
[[outputs.clickhouse]]
host = "127.0.0.1"
port = {port}
database = "e2e_traces"
flush_interval_secs = 0.05
[stores]
trace = "clickhouse"
"""


def test_traces_posted_are_read_back_from_clickhouse(tmp_path: Path, chdb: ServerProcess) -> None:
    cfg = tmp_path / "airisd.toml"
    cfg.write_text(TRACE_CONFIG.format(port=chdb.port))
    airis = AirisProcess(tmp_path / "data", role="trace", config=cfg).start()
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 600))
    spans = [{"trace_id": "ch-trace-1", "span_id": "root", "operation_name": "GET /api/users",
              "service_name": "user-api", "start_time": f"{start}.000Z", "end_time": f"{start}.250Z",
              "tags": {"http.status_code": 200, "component": "http"}},
             {"trace_id": "ch-trace-1", "span_id": "db", "parent_span_id": "root", "operation_name": "SELECT users",
              "service_name": "user-db", "start_time": f"{start}.010Z", "end_time": f"{start}.200Z",
              "tags": {"error": True}}]
    try:
        client = airis.client("trace")
        assert client.post("/traces/batch", json={"spans": spans}).status_code == 201

        def trace() -> dict[str, Any] | None:
            resp = client.get("/traces/ch-trace-1")
            return resp.json()["data"] if resp.status_code == 200 else None

        wait_for(lambda: trace() is not None and len(trace()["spans"]) == 2, 20, "the trace in ClickHouse")  # type: ignore[index]
        data = trace()
        assert data is not None
        assert [s["span_id"] for s in data["spans"]] == ["root", "db"]
        assert data["spans"][0]["tags"]["http.status_code"] == 200  # types kept
        found = client.get("/traces/search", params={"service": "user-db", "tags": "error:true"}).json()["data"]
        assert [t["trace_id"] for t in found["traces"]] == ["ch-trace-1"]
        assert client.get("/api/services").json()["data"] == ["user-api", "user-db"]
    finally:
        airis.stop()
