"""SIGTERM delivers what inputs have buffered: inputs stop before the pipeline closes."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.e2e_helpers import AirisProcess, free_port

pytestmark = pytest.mark.e2e


def _received(airis: AirisProcess) -> float:
    text = airis.client("log").get("/metrics/prometheus").text
    return sum(float(m) for m in re.findall(r'^airisd_syslog_messages_total\{[^}]*\} (\S+)$', text, re.M))


def test_buffered_syslog_records_survive_sigterm(tmp_path: Path) -> None:
    port = free_port()
    args = ["--set", "inputs.syslog.flush_interval_secs=10", "--set", "inputs.syslog.batch_size=5000",
            "--set", 'inputs.syslog.transports=["tcp"]']
    airis = AirisProcess(tmp_path / "data", role="log", extra_args=args,
                         env={"AIRISD_SYSLOG_ADDRESS": f"127.0.0.1:{port}"}).start()
    n = 300
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for i in range(n):
            sock.sendall(f"<13>1 2026-01-01T00:00:00Z host app - - - shutdown-check {i}\n".encode())
    deadline = time.monotonic() + 10
    while _received(airis) < n:
        assert time.monotonic() < deadline, "daemon did not read the messages"
        time.sleep(0.05)
    assert airis.terminate() == 0  # records are still in the input's 10 s buffer here
    airis.stop()
    again = AirisProcess(tmp_path / "data", role="log", extra_args=["--set", "outputs.sqlite.retention_days=0"],
                         env={"AIRISD_SYSLOG_ADDRESS": f"127.0.0.1:{free_port()}"}).start()
    try:
        data = again.client("log").get("/logs/search", params={"q": "shutdown-check", "limit": 1000}).json()["data"]
        assert data["count"] == n
    finally:
        again.stop()
