"""The example plugins, tested with airisd.testing: the conformance check, then behaviour with a
fake clock and an in-memory sink, and the error policy."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import anyio
import pytest
from airisd_plugin_example.jsonl_file import JsonlFileConfig, JsonlFileOutput
from airisd_plugin_example.random_walk import RandomWalkConfig, RandomWalkInput

from airisd.errors import PermanentError, TransientError
from airisd.model import Signal
from airisd.plugin import Plugin
from airisd.testing import (
    FakeClock,
    MemorySink,
    make_context,
    run_plugin_conformance,
    running_pipeline,
    sample_batch,
)


def test_random_walk_keeps_the_plugin_contract() -> None:
    report = run_plugin_conformance(RandomWalkInput, {"series": 2, "interval_secs": 1.0, "seed": 7})
    assert "run reaches started and stops when cancelled" in report.passed


def test_jsonl_file_keeps_the_plugin_contract(tmp_path: Path) -> None:
    def flushed(plugin: Plugin) -> None:
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert {json.loads(line)["signal"] for line in lines} == {"metrics", "logs", "traces"}

    report = run_plugin_conformance(JsonlFileOutput, {"path": "out.jsonl"}, data_dir=tmp_path,
                                    check_flushed=flushed)
    assert report.writes == {"logs": "ok", "metrics": "ok", "traces": "ok"}
    assert "shutdown flushes" in report.passed


@pytest.mark.parametrize("raw", [{"series": 0}, {"interval_secs": 0}, {"step": -1},
                                 {"labels": {"series": "x"}}])
def test_random_walk_refuses_bad_config(raw: dict[str, object]) -> None:
    with pytest.raises(AssertionError, match="config validated"):
        run_plugin_conformance(RandomWalkInput, raw)


@pytest.mark.anyio
async def test_random_walk_emits_on_the_fake_clock_into_a_pipeline(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = MemorySink()
    async with running_pipeline([sink]) as pipeline:
        ctx = make_context(tmp_path, clock=clock, emit=pipeline.submit)
        config = RandomWalkConfig(series=2, interval_secs=5.0, seed=1, labels={"host": "a"})
        walk = RandomWalkInput(config, ctx)
        async with anyio.create_task_group() as tg:
            await tg.start(walk.run)
            with anyio.fail_after(5):
                await sink.wait_batches(3)
            tg.cancel_scope.cancel()
    points = sink.items[:6]
    assert [p.labels for p in points[:2]] == [{"host": "a", "series": "0"}, {"host": "a", "series": "1"}]
    assert points[2].ts - points[0].ts == 5_000_000_000  # one interval of the fake clock
    assert all(abs(b.value - a.value) <= 1.0 for a, b in zip(points, points[2:], strict=False))
    assert clock.slept[:2] == [5.0, 5.0]


@pytest.mark.anyio
async def test_jsonl_file_write_outside_start_and_shutdown_is_permanent(tmp_path: Path) -> None:
    out = JsonlFileOutput(JsonlFileConfig(path="x.jsonl"), make_context(tmp_path))
    with pytest.raises(PermanentError, match="before start"):
        await out.write(sample_batch(Signal.LOGS))
    await out.start()
    await out.shutdown()
    with pytest.raises(PermanentError):
        await out.write(sample_batch(Signal.LOGS))


@pytest.mark.anyio
@pytest.mark.parametrize(("err", "kind"), [(errno.ENOSPC, TransientError), (errno.EIO, TransientError),
                                           (errno.EACCES, PermanentError), (errno.EROFS, PermanentError)])
async def test_jsonl_file_classifies_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int,
                                               kind: type[Exception]) -> None:
    out = JsonlFileOutput(JsonlFileConfig(path="x.jsonl"), make_context(tmp_path))
    await out.start()

    def failing(data: bytes) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(out, "_append", failing)
    with pytest.raises(kind, match=os.strerror(err)):
        await out.write(sample_batch(Signal.LOGS))
    await out.shutdown()


@pytest.mark.anyio
async def test_transient_failures_are_retried_and_permanent_ones_dropped() -> None:
    """What the daemon does with an output's errors, seen through the in-memory sink."""
    sink = MemorySink()
    async with running_pipeline([sink]) as pipeline:
        sink.fail_next(2, transient=True)
        await pipeline.submit(sample_batch(Signal.METRICS))
        assert len(sink.batches) == 1 and sink.attempts == 3
        sink.fail_next(1, transient=False)
        with pytest.raises(PermanentError):
            await pipeline.submit(sample_batch(Signal.METRICS))
    assert len(sink.batches) == 1
