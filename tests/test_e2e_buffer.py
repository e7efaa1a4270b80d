"""Disk buffers end to end: a real `airisd run` with the file output behind a disk buffer.

kill -9 mid-stream loses nothing acknowledged; a broken target is waited out on disk and then
receives everything in order; a full buffer answers 503 + Retry-After; a corrupt segment is
reported and kept aside as found, and everything but its damaged record delivered; `airisd buffer
inspect|repair` see and fix it."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from airisd.buffer import codec
from airisd.buffer.disk.segments import Entry, list_segments, scan_segment, segment_name
from tests.e2e_helpers import AirisProcess, airisd_bin

pytestmark = pytest.mark.e2e

CONFIG = """
[auth]
rate_limit_per_minute = 0  # the streams here post ~100 requests a second
[agent]
role = "metrics"
[[inputs.http_metrics]]
[[outputs.sqlite]]
retention_days = 0.0
[[outputs.file]]
path = "{path}"
flush_interval_secs = 0.05
batch_size = 500
retry_initial_secs = 0.05
retry_max_secs = 0.2
[outputs.file.buffer]
type = "disk"
max_segment_bytes = 4096
max_size_bytes = {max_size}
"""


def setup(tmp_path: Path, max_size: int = 0) -> tuple[AirisProcess, Path]:
    target = tmp_path / "target" / "out.jsonl"
    target.parent.mkdir()
    cfg = tmp_path / "airisd.toml"
    cfg.write_text(CONFIG.format(path=target, max_size=max_size))
    return AirisProcess(tmp_path / "data", role="metrics", config=cfg), target


def batch(start: int, n: int) -> dict[str, object]:
    return {"metrics": [{"name": "e2e", "value": v} for v in range(start, start + n)]}


def delivered(target: Path) -> list[int]:
    if not target.exists():
        return []
    return [int(json.loads(line)["value"]) for line in target.read_text().splitlines() if line.endswith("}")]


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def break_target(target: Path) -> None:
    """A file where the target's directory was: open() fails, for root too (chmod would not)."""
    target.parent.rename(target.parent.with_name("target.away"))
    target.parent.write_text("not a directory")


def restore_target(target: Path) -> None:
    target.parent.unlink()
    target.parent.with_name("target.away").rename(target.parent)


def file_health(airis: AirisProcess) -> dict[str, object]:
    body = airis.client("metrics").get("/health/detailed").json()
    data = body.get("data", body)
    return dict(data["outputs"]["file/metrics"])


def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    airis, target = setup(tmp_path)
    airis.start()
    acked: list[int] = []
    lock = threading.Lock()

    def stream(worker: int) -> None:
        client = airis.client("metrics")
        start = worker * 1_000_000
        while True:
            try:
                resp = client.post("/metrics/batch", json=batch(start, 20))
            except httpx.HTTPError:
                return  # the daemon died under us
            if resp.status_code == 201:
                with lock:
                    acked.extend(range(start, start + 20))
            start += 20

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 4000, what="4000 acknowledged points")
    airis.kill9()
    for t in threads:
        t.join(timeout=30)
    airis.stop()

    again = AirisProcess(airis.data_dir, role="metrics", config=airis.config).start()
    try:
        wait_for(lambda: set(acked) <= set(delivered(target)), what="every acknowledged point in the file")
        got = delivered(target)
        duplicates = len(got) - len(set(got))
        assert duplicates <= 500  # at most the write in flight at the kill (batch_size records)
        for worker in range(4):  # each client's points arrive in the order it sent them
            mine = [v for v in dict.fromkeys(got) if v // 1_000_000 == worker]
            assert mine == sorted(mine)
    finally:
        again.stop()


def test_a_broken_target_is_waited_out_on_disk_then_gets_everything_in_order(tmp_path: Path) -> None:
    airis, target = setup(tmp_path)
    airis.start()
    try:
        client = airis.client("metrics")
        assert client.post("/metrics/batch", json=batch(0, 10)).status_code == 201
        wait_for(lambda: delivered(target) == list(range(10)), what="the first points")
        break_target(target)
        for i in range(1, 40):
            assert client.post("/metrics/batch", json=batch(i * 10, 10)).status_code == 201
        wait_for(lambda: int(file_health(airis)["retried"]) >= 2, what="failed writes")  # type: ignore[call-overload]
        health = file_health(airis)
        assert health["buffered_events"] == 390
        assert 0 < float(health["oldest_age_seconds"]) < 60  # type: ignore[arg-type]
        assert int(health["buffered_bytes"]) > 0  # type: ignore[call-overload]
        assert "out.jsonl" in str(health["last_error"])
        assert health["buffer"]["type"] == "disk"  # type: ignore[index]
        metrics = client.get("/metrics/prometheus").text
        assert 'airisd_output_buffered_events{output="file",signal="metrics"} 390' in metrics
        restore_target(target)
        wait_for(lambda: len(delivered(target)) >= 400, what="delivery after the target came back")
        assert delivered(target) == list(range(400))  # in order, exactly once (failed writes wrote nothing)
        wait_for(lambda: file_health(airis)["buffered_events"] == 0, what="an empty buffer")
    finally:
        airis.stop()


def test_a_full_disk_buffer_answers_503_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    airis, target = setup(tmp_path, max_size=16384)
    airis.start()
    try:
        client = airis.client("metrics")
        break_target(target)
        acked: list[int] = []
        refused = None
        for i in range(200):
            resp = client.post("/metrics/batch", json=batch(i * 20, 20))
            if resp.status_code == 503:
                refused = resp
                break
            assert resp.status_code == 201, resp.text
            acked += range(i * 20, i * 20 + 20)
        assert refused is not None, "the buffer never filled"
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "BACKPRESSURE"
        assert acked
        restore_target(target)
        wait_for(lambda: set(acked) <= set(delivered(target)), what="every acknowledged point")
        assert delivered(target) == acked  # refused batches were not half-stored anywhere
        assert client.post("/metrics/batch", json=batch(10**6, 5)).status_code == 201  # room again
    finally:
        airis.stop()


def test_a_corrupt_segment_is_reported_kept_aside_and_the_rest_delivered(tmp_path: Path) -> None:
    airis, target = setup(tmp_path)
    airis.start()
    client = airis.client("metrics")
    break_target(target)
    for i in range(100):
        assert client.post("/metrics/batch", json=batch(i * 10, 10)).status_code == 201
    assert airis.terminate() == 0  # the target is down: records stay in the buffer
    airis.stop()
    restore_target(target)
    bufdir = airis.data_dir / "buffers" / "file-metrics"
    segments = [n for n in list_segments(bufdir) if (bufdir / segment_name(n)).stat().st_size]
    assert len(segments) >= 3
    victim = bufdir / segment_name(segments[1])
    entries = scan_segment(victim, 0, 0, newest=False).entries
    hit = entries[len(entries) // 2]
    lost = set(values_in(victim, [hit]))  # the one damaged record: its neighbours are still delivered
    assert 0 < len(lost) < len(values_in(victim))
    data = bytearray(victim.read_bytes())
    data[hit.offset + codec.HEADER_SIZE + 20] ^= 0xFF
    victim.write_bytes(bytes(data))

    cli = [airisd_bin(), "buffer", "inspect", "--config", str(airis.config), "--data-dir", str(airis.data_dir)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"PROBLEM:  corrupt_segment in {victim.name}" in out.stdout
    assert f"waiting:  {1000 - len(lost)} events" in out.stdout  # the damaged record is not counted

    again = AirisProcess(airis.data_dir, role="metrics", config=airis.config).start()
    try:
        expected = [v for v in range(1000) if v not in lost]
        wait_for(lambda: delivered(target) == expected, what="the rest delivered")
        health = file_health(again)
        assert health["corrupt_segments"] == 1
        assert health["buffer"]["findings"][0]["kind"] == "corrupt_segment"  # type: ignore[index]
        body = again.client("metrics").get("/health/detailed").json()
        assert body.get("data", body)["status"] == "degraded"
        assert 'airisd_output_buffer_corrupt_segments_total{output="file",signal="metrics"} 1' in \
            again.client("metrics").get("/metrics/prometheus").text
        repair = subprocess.run([*cli[:2], "repair", *cli[3:]], capture_output=True, text=True, timeout=60)
        assert repair.returncode == 2 and "in use by a running airisd" in repair.stderr
    finally:
        again.stop()
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"kept for a post-mortem: corrupt/{victim.name}" in out.stdout
    shutil.rmtree(tmp_path / "data" / "buffers")


def values_in(segment: Path, entries: list[Entry] | None = None) -> list[int]:
    data = segment.read_bytes()
    out = []
    for e in entries if entries is not None else scan_segment(segment, 0, 0, newest=False).entries:
        body = data[e.offset + codec.HEADER_SIZE: e.end]
        meta = codec.check_body(body, codec.read_header(data[e.offset:])[1])
        out += [int(p.value) for p in codec.decode_body(body, meta).items]
    return out
