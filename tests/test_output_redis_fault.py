"""Fault tests of the redis output through a real airisd: points stream in over HTTP while
redis-server is stopped and restarted, or while airisd itself is killed with ``kill -9`` and
restarted; every point acknowledged with a 2xx must reach the stream, content intact (at least
once: duplicates are counted, never a loss). The output has a disk buffer.

redis-server runs with ``--appendonly yes --appendfsync always`` so that what it acknowledged
before the stop is still there after the restart."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from airisd_plugins.outputs.redis import codec

from airisd.model import Point, Signal
from tests.e2e_helpers import AirisProcess
from tests.servers import ServerProcess, redis_server

PAUSE_SECS = float(os.environ.get("AIRISD_FAULT_PAUSE_SECS", "30"))
T0 = 1_790_000_000_000_000_000
pytestmark = [pytest.mark.e2e, pytest.mark.services]


def durable_redis(workdir: Path) -> ServerProcess:
    srv = redis_server(workdir)
    at = srv.argv.index("--appendonly")
    srv.argv[at + 1] = "yes"
    srv.argv += ["--appendfsync", "always"]
    return srv


def daemon(tmp_path: Path, redis_port: int) -> AirisProcess:
    config = tmp_path / "airisd.toml"
    config.write_text(f"""
[auth]
rate_limit_per_minute = 0  # the streams here post ~100 requests a second
[agent]
  role = "metrics"
  data_dir = "{tmp_path / 'data'}"
[listeners.metrics]
  address = "127.0.0.1:8001"
[[inputs.http_metrics]]
[[outputs.sqlite]]
[[outputs.redis]]
  port = {redis_port}
  stream_prefix = "fault:"
  batch_size = 500
  retry_initial_secs = 0.1
  retry_max_secs = 1.0
  timeout_secs = 2.0
  buffer = {{ type = "disk" }}
""")
    return AirisProcess(tmp_path / "data", role="metrics", config=config)


class Streamer:
    """Posts batches of 50 numbered points until stopped; remembers which were acknowledged.
    A batch that was not acknowledged (503, 429, a refused connection) is posted again."""

    def __init__(self, airis: AirisProcess) -> None:
        self.url = airis.url("metrics") + "/metrics/batch"
        self.headers = airis.auth_headers()
        self.acked: list[int] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Streamer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        seq = 0
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self._stop.is_set():
                batch = [{"name": "fault", "value": float(i), "timestamp": (T0 + i) // 1_000_000,
                          "labels": {"seq": str(i)}} for i in range(seq, seq + 50)]
                try:
                    ok = client.post(self.url, json={"metrics": batch}).status_code == 201
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.acked.extend(range(seq, seq + 50))
                    seq += 50
                else:
                    self.refused += 1
                    time.sleep(0.2)
                time.sleep(0.01)

    def wait_acked(self, at_least: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < at_least:
            assert time.monotonic() < deadline, f"only {len(self.acked)} points acknowledged"
            time.sleep(0.1)


def arrived(port: int) -> list[Point]:
    client: Any = redis.Redis(port=port)
    try:
        return [codec.decode(Signal.METRICS, f) for _, f in client.xrange("fault:metrics")]  # type: ignore[misc]
    finally:
        client.close()


def assert_all_arrived(port: int, acked: list[int], timeout: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    want = set(acked)
    while True:
        points = arrived(port)
        got = {int(p.value) for p in points}
        if want <= got or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = sorted(want - got)
    assert not missing, f"{len(missing)} acknowledged points never arrived, first {missing[:10]}"
    for p in points:  # content intact
        assert p.name == "fault" and p.labels == {"seq": str(int(p.value))} and p.ts == ((T0 + int(p.value))
                                                                                          // 1_000_000) * 1_000_000
    return {"acked": len(want), "arrived": len(points), "duplicates": len(points) - len(got)}


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = durable_redis(tmp_path / "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(kill=True)


def test_redis_stopped_mid_stream_loses_nothing(tmp_path: Path, redis_srv: ServerProcess) -> None:
    airis = daemon(tmp_path, redis_srv.port).start()
    try:
        with Streamer(airis) as s:
            s.wait_acked(2000)
            redis_srv.stop()
            before = len(s.acked)
            time.sleep(PAUSE_SECS)
            assert len(s.acked) > before  # the disk buffer kept acknowledging while Redis was away
            redis_srv.start()  # same port, same append-only file
            time.sleep(2)
        counts = assert_all_arrived(redis_srv.port, s.acked)
        print(f"redis stopped {PAUSE_SECS:g}s: {counts}, {s.refused} batches refused")
    finally:
        airis.stop()


def test_airisd_killed_mid_stream_loses_nothing(tmp_path: Path, redis_srv: ServerProcess) -> None:
    airis = daemon(tmp_path, redis_srv.port).start()
    try:
        with Streamer(airis) as s:
            s.wait_acked(1000)
            redis_srv.stop()  # so that the buffer holds a backlog when airisd dies
            time.sleep(min(PAUSE_SECS, 5))
            airis.kill9()
            backlog = len(s.acked)
            airis.start()
            s.wait_acked(backlog + 1000)
            redis_srv.start()
            time.sleep(2)
        counts = assert_all_arrived(redis_srv.port, s.acked)
        print(f"airisd kill -9 with a backlog: {counts}, {s.refused} batches refused")
    finally:
        airis.stop()
