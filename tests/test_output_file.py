"""The file output: JSON lines with the signal, fsync'ed appends, rotation, and a path that stops
working reported as a TransientError (so the runner retries and the buffer keeps the records)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import msgspec
import pytest
from airisd_plugins.outputs.file import FileConfig, FileOutput

from airisd.errors import TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span
from tests.conftest import make_ctx

pytestmark = pytest.mark.anyio


def make(tmp_path: Path, **cfg: object) -> FileOutput:
    config = msgspec.convert(cfg, FileConfig)
    config.validate()
    return FileOutput(config, make_ctx(tmp_path))


async def test_every_record_is_one_json_line_with_its_signal(tmp_path: Path) -> None:
    out = make(tmp_path, path=str(tmp_path / "sub" / "out.jsonl"))
    await out.start()
    await out.write(Batch(Signal.METRICS, [Point(name="cpu", value=1.5, ts=7, labels={"h": "a"}),
                                           Point(name="nan", value=math.nan, ts=8)]))
    await out.write(Batch(Signal.LOGS, [LogRecord(ts=9, level="ERROR", message='say "hi"\nbye')]))
    await out.write(Batch(Signal.TRACES, [Span(trace_id="t", span_id="s", operation_name="op", service_name="svc",
                                               start_ts=1, end_ts=2, tags={"n": 1})]))
    lines = [json.loads(x) for x in (tmp_path / "sub" / "out.jsonl").read_text().splitlines()]
    assert [x["signal"] for x in lines] == ["metrics", "metrics", "logs", "traces"]
    assert lines[0] == {"signal": "metrics", "name": "cpu", "value": 1.5, "ts": 7, "labels": {"h": "a"}}
    assert lines[1]["value"] is None  # JSON has no NaN
    assert lines[2]["message"] == 'say "hi"\nbye'
    assert lines[3]["tags"] == {"n": 1}
    await out.shutdown()


async def test_default_path_is_in_the_data_dir(tmp_path: Path) -> None:
    out = make(tmp_path)
    await out.start()
    await out.write(Batch(Signal.METRICS, [Point(name="x", value=1, ts=1)]))
    assert (tmp_path / "output-file.jsonl").read_text().count("\n") == 1


async def test_rotation_renames_the_full_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    out = make(tmp_path, path=str(path), rotate_max_bytes=200)
    await out.start()
    for i in range(10):
        await out.write(Batch(Signal.METRICS, [Point(name="x", value=i, ts=i)]))
    rotated = sorted(tmp_path / n for n in os.listdir(tmp_path) if n.startswith("out.jsonl."))
    assert rotated and path.stat().st_size <= 200
    values = [json.loads(line)["value"] for f in [*rotated, path] for line in f.read_text().splitlines()]
    assert sorted(values) == [float(i) for i in range(10)]


async def test_an_unwritable_path_is_transient_and_recovers(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    out = make(tmp_path, path=str(target / "out.jsonl"))
    await out.start()
    target.rmdir()
    target.write_text("a file where the directory was")  # fails for root too, unlike chmod
    with pytest.raises(TransientError, match=r"out\.jsonl"):
        await out.write(Batch(Signal.METRICS, [Point(name="x", value=1, ts=1)]))
    target.unlink()
    target.mkdir()
    await out.write(Batch(Signal.METRICS, [Point(name="x", value=2, ts=2)]))
    assert [json.loads(x)["value"] for x in (target / "out.jsonl").read_text().splitlines()] == [2.0]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="format must be 'json', got 'csv'"):
        FileConfig(format="csv").validate()
    with pytest.raises(ValueError, match="rotate_max_bytes must be >= 0, got -1"):
        FileConfig(rotate_max_bytes=-1).validate()
