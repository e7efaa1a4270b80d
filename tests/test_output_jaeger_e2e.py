"""``airisd run`` with ``[[outputs.jaeger]]`` delivering to a real OTLP/HTTP receiver, Arize Phoenix
(no Jaeger can be had offline), and the fault tests: the receiver stopped mid-stream for
AIRISD_FAULT_PAUSE_SECS (default 30) seconds and restarted on the same port and data, and airisd
killed with SIGKILL mid-stream and restarted; every span acknowledged to the client arrives.

Phoenix acknowledges a request before its background insert and drains that queue for 5 s when
stopped, so the streams here stay well under its insert rate: what is measured is airisd's
delivery, not Phoenix's own queue.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airisd_plugins.outputs.jaeger.otlp import wire_span_id, wire_trace_id

from tests.e2e_helpers import AirisProcess
from tests.servers import ServerProcess, phoenix_server, running
from tests.test_output_jaeger_phoenix import phoenix_spans
from tests.test_output_jaeger_store import START_SECS, daemon_config

pytestmark = [pytest.mark.e2e, pytest.mark.services]

PAUSE_SECS = float(os.environ.get("AIRISD_FAULT_PAUSE_SECS", "30"))


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(phoenix_server(tmp_path_factory.mktemp("phoenix"))) as server:
        yield server


def airisd_to(phoenix: ServerProcess, root: Path, name: str, **options: Any) -> AirisProcess:
    jaeger = {"endpoint": phoenix.url, "flush_interval_secs": 0.2, "retry_max_secs": 1.0, **options}
    config = daemon_config(root / f"{name}.toml", inputs=["http_traces"], jaeger=jaeger)
    return AirisProcess(root / name, role="trace", config=config)


def test_posted_spans_arrive_at_phoenix(phoenix: ServerProcess, tmp_path: Path) -> None:
    airis = airisd_to(phoenix, tmp_path, "a").start(timeout=START_SECS)
    try:
        before = len(phoenix_spans(phoenix.url, want=0, timeout=0))
        spans = [
            {"trace_id": "e2e0trace0001", "span_id": "root_1", "operation_name": "POST /api/orders",
             "service_name": "api-gateway", "start_time": "2026-01-01T00:00:00.000Z",
             "end_time": "2026-01-01T00:00:00.250Z", "kind": "server",
             "tags": {"http.status_code": 502, "order.items": 3}},
            {"trace_id": "e2e0trace0001", "span_id": "child_1", "parent_span_id": "root_1",
             "operation_name": "charge card", "service_name": "payments", "start_time": "2026-01-01T00:00:00.010Z",
             "duration_ms": 40, "tags": {"amount": 12.5, "retry": False},
             "logs": [{"timestamp": "2026-01-01T00:00:00.020Z", "message": "declined", "code": 51}]},
        ]
        assert airis.client("trace").post("/traces", json={"spans": spans}).status_code in (200, 201, 202)
        got = phoenix_spans(phoenix.url, want=before + 2)
        root, child = got[wire_span_id("root_1").hex()], got[wire_span_id("child_1").hex()]
        assert root["context"]["trace_id"] == child["context"]["trace_id"] == wire_trace_id("e2e0trace0001").hex()
        assert (root["name"], root["status_code"], root["parent_id"]) == ("POST /api/orders", "ERROR", None)
        assert root["attributes"] == {"http.status_code": 502, "order.items": 3,
                                      "airisd.trace_id": "e2e0trace0001", "airisd.span_id": "root_1"}
        assert (child["name"], child["parent_id"], child["status_code"]) == ("charge card", root["context"]["span_id"],
                                                                              "UNSET")
        assert child["attributes"]["amount"] == 12.5 and child["attributes"]["retry"] is False
        assert [(e["name"], e["attributes"]) for e in child["events"]] == [("declined", {"code": 51})]
    finally:
        airis.stop()


class Stream:
    """Posts a few spans every ``interval`` seconds from a thread; remembers what was acknowledged."""

    def __init__(self, airis: AirisProcess, *, per_request: int = 5, interval: float = 0.25) -> None:
        self.airis, self.per_request, self.interval = airis, per_request, interval
        self.acked: dict[str, int] = {}  # span id -> sequence number
        self.refused = 0
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                batch: list[dict[str, Any]] = []
                for _ in range(self.per_request):
                    self.seq += 1
                    start = time.time_ns()
                    batch.append({"trace_id": f"{self.seq // 10 + 1:032x}", "span_id": f"{self.seq:016x}",
                                  "operation_name": f"op-{self.seq}", "service_name": "stream",
                                  "start_time": start / 1e9, "end_time": start / 1e9 + 0.001,
                                  "tags": {"seq": self.seq}})
                try:
                    resp = client.post(self.airis.url("trace") + "/traces", json={"spans": batch},
                                       headers=self.airis.auth_headers())
                except httpx.TransportError:
                    resp = None  # airisd is down: nothing acknowledged
                if resp is not None and resp.status_code < 300:
                    self.acked.update({s["span_id"]: s["tags"]["seq"] for s in batch})
                else:
                    self.refused += 1
                self._stop.wait(self.interval)


def assert_all_arrived(phoenix: ServerProcess, acked: dict[str, int], *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = phoenix_spans(phoenix.url, want=0, timeout=0)
        missing = [sid for sid in acked if sid not in got]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged spans never arrived, e.g. {missing[:5]}"
    for sid, seq in acked.items():  # content intact
        assert (got[sid]["name"], got[sid]["attributes"]["seq"]) == (f"op-{seq}", seq)


@pytest.mark.slow
def test_phoenix_stopped_mid_stream_loses_nothing(phoenix: ServerProcess, tmp_path: Path) -> None:
    airis = airisd_to(phoenix, tmp_path, "f", buffer={"type": "disk"}).start(timeout=START_SECS)
    try:
        with Stream(airis) as stream:
            time.sleep(3)
            phoenix.stop()
            stopped_at = len(stream.acked)
            time.sleep(PAUSE_SECS)
            during = len(stream.acked) - stopped_at
            phoenix.start()  # same port, same working directory
            time.sleep(3)
        assert during > 0, "nothing was acknowledged while Phoenix was down: the buffer did not take it"
        assert_all_arrived(phoenix, stream.acked)
    finally:
        airis.stop()


@pytest.mark.slow
def test_airisd_killed_mid_stream_loses_nothing(phoenix: ServerProcess, tmp_path: Path) -> None:
    """SIGKILL while spans wait in the disk buffer (Phoenix is down then), restart, deliver."""
    airis = airisd_to(phoenix, tmp_path, "k", buffer={"type": "disk"}).start(timeout=START_SECS)
    try:
        with Stream(airis) as stream:
            time.sleep(2)
            phoenix.stop()
            stopped_at = len(stream.acked)
            time.sleep(3)
            airis.kill9()
            waiting = len(stream.acked) - stopped_at  # acknowledged, on disk only, when killed
            airis.start(timeout=START_SECS)  # same data directory and ports
            time.sleep(2)
            phoenix.start()
            time.sleep(2)
        assert waiting > 0
        assert_all_arrived(phoenix, stream.acked)
    finally:
        airis.stop()
