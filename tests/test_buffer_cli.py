"""`airisd buffer inspect|repair` in process, on a buffer directory left by a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from airisd.buffer.base import Offer
from airisd.buffer.disk import DiskBuffer
from airisd.buffer.disk.segments import acquire_lock, list_segments, segment_name
from airisd.cli import main
from airisd.model import Batch, Point, Signal


def crashed_buffer(data_dir: Path) -> Path:
    """A buffer with 50 waiting points whose process died mid-append (a torn tail)."""
    directory = data_dir / "buffers" / "file-metrics"

    async def fill() -> None:
        buf = DiskBuffer(directory, max_bytes=1 << 20, max_segment_bytes=1 << 20)
        await buf.open()
        for i in range(50):
            await buf.put(Offer(Batch(Signal.METRICS, [Point(name="p", value=i, ts=i)]))).wait()
        buf.log.close()

    anyio.run(fill)
    newest = directory / segment_name(list_segments(directory)[-1])
    with newest.open("ab") as fh:
        fh.write(b"\x40\x00\x00\x00torn")
    return directory


def test_inspect_reports_and_repair_truncates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = crashed_buffer(tmp_path)
    assert main(["buffer", "inspect", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{directory} (not in use)" in out and "waiting:  50 events" in out
    assert "PROBLEM:  torn_tail" in out

    assert main(["buffer", "repair", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "50 events to deliver" in out and "truncated to" in out

    assert main(["buffer", "inspect", "--data-dir", str(tmp_path), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["events"] == 50 and report["findings"] == [] and report["oldest_age_seconds"] >= 0


def test_repair_refuses_while_a_daemon_holds_the_buffer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = crashed_buffer(tmp_path)
    fd = acquire_lock(directory)
    try:
        assert main(["buffer", "repair", "--data-dir", str(tmp_path)]) == 2
        assert "in use by a running airisd" in capsys.readouterr().err
        assert main(["buffer", "inspect", "--data-dir", str(tmp_path)]) == 1
        assert "(in use by a running airisd)" in capsys.readouterr().out
    finally:
        os.close(fd)


def test_no_buffer_is_an_error_naming_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["buffer", "inspect", "--data-dir", str(tmp_path), "--output", "nope"]) == 2
    assert "no disk buffer found for output 'nope'" in capsys.readouterr().err
