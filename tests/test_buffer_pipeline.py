"""Buffers behind the pipeline: a full buffer is 503 + Retry-After (block) or a counted drop
(drop_newest); a disk-buffered runner delivers in order, survives a restart, and stops draining at
the first failure while shutting down; health and self-metrics show the buffer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from airisd.buffer.config import DISK_DEFAULT_MAX_SIZE_BYTES, BufferConfig
from airisd.config import build_config
from airisd.daemon import Daemon
from airisd.errors import Backpressure, ConfigError, PermanentError, TransientError
from airisd.model import Signal
from airisd.pipeline import OutputConfig, OutputRunner, Pipeline
from airisd.registry import build_registry
from airisd.selfmetrics import Registry
from tests.conftest import make_ctx
from tests.test_pipeline import FakeOutput, pts, running

pytestmark = pytest.mark.anyio


def output(tmp_path: Path, metrics: Registry, **buffer: Any) -> FakeOutput:
    config = OutputConfig(batch_size=10, flush_interval_secs=0.001, retry_initial_secs=0.001,
                          retry_max_secs=0.002, buffer=BufferConfig(**buffer))
    config.validate()
    return FakeOutput(config, make_ctx(tmp_path, metrics=metrics), durable=False)


def pipeline_of(*outs: FakeOutput, metrics: Registry) -> tuple[Pipeline, list[OutputRunner]]:
    runners = [OutputRunner(o, Signal.METRICS, f"out{i}", metrics) for i, o in enumerate(outs)]
    return Pipeline({}, {Signal.METRICS: runners}, metrics, retry_after_secs=3), runners


@pytest.mark.parametrize("kind", ["memory", "disk"])
async def test_a_full_buffer_blocks_with_retry_after_and_loses_nothing(tmp_path: Path, kind: str) -> None:
    metrics = Registry()
    out = output(tmp_path, metrics, type=kind, max_size_bytes=400)
    out.gate = anyio.Event()  # the backend hangs: nothing leaves the buffer
    pipeline, (runner,) = pipeline_of(out, metrics=metrics)
    accepted = refused = 0
    async with running([runner]):
        for i in range(40):
            try:
                await pipeline.submit(pts(1, start=i))
                accepted += 1
            except Backpressure as exc:
                assert exc.retry_after_secs == 3 and exc.status == 503
                assert exc.details == {"outputs": ["out0"]}
                refused += 1
        assert accepted and refused
        assert runner.health()["buffered_bytes"] <= 400 + 100
        out.gate.set()
    assert [p.ts for p in out.items] == list(range(accepted))  # every accepted record, in order


async def test_drop_newest_accepts_drops_and_counts(tmp_path: Path) -> None:
    metrics = Registry()
    out = output(tmp_path, metrics, type="disk", max_size_bytes=300, when_full="drop_newest")
    out.gate = anyio.Event()
    pipeline, (runner,) = pipeline_of(out, metrics=metrics)
    async with running([runner]):
        for i in range(30):
            await pipeline.submit(pts(1, start=i))  # never refused
        dropped = runner.m_dropped.get("out0", "metrics", "buffer_full")
        assert dropped > 0
        assert runner.health()["dropped"] == dropped
        out.gate.set()
    assert len(out.items) + dropped == 30
    assert 'airisd_output_dropped_total{output="out0",signal="metrics",reason="buffer_full"}' in metrics.render()


async def test_a_blocking_output_refuses_for_all_but_a_dropping_one_does_not(tmp_path: Path) -> None:
    metrics = Registry()
    dropper = output(tmp_path / "a", metrics, type="memory", max_size_bytes=1, when_full="drop_newest")
    blocker = output(tmp_path / "b", metrics, type="memory", max_size_bytes=1)
    pipeline, runners = pipeline_of(dropper, blocker, metrics=metrics)
    await pipeline.submit(pts(1))  # empty buffers take anything
    with pytest.raises(Backpressure) as exc:
        await pipeline.submit(pts(1, start=1))
    assert exc.value.details == {"outputs": ["out1"]}
    assert runners[0].m_dropped.get("out0", "metrics", "buffer_full") == 0  # refused whole: nothing dropped


async def test_disk_buffered_runner_resumes_after_a_restart(tmp_path: Path) -> None:
    metrics = Registry()
    out = output(tmp_path, metrics, type="disk")
    out.fail = [TransientError("down")] * 1000  # the backend is down for this whole run
    pipeline, (runner,) = pipeline_of(out, metrics=metrics)
    async with running([runner]):
        for i in range(5):
            await pipeline.submit(pts(3, start=i * 3))
        await out.started_writing.wait()
        health = runner.health()
        assert health["buffered_events"] == 15 and health["buffer"]["type"] == "disk"
        assert health["buffer"]["max_size_bytes"] == DISK_DEFAULT_MAX_SIZE_BYTES
        assert health["last_error"] == "TransientError: down"
    # close() stopped the loop at the next failure: the records wait on disk
    assert out.items == []
    assert (tmp_path / "buffers" / "out0-metrics").is_dir()

    metrics2 = Registry()
    out2 = output(tmp_path, metrics2, type="disk")
    _, (runner2,) = pipeline_of(out2, metrics=metrics2)
    async with running([runner2]):
        pass
    assert [p.ts for p in out2.items] == list(range(15))
    assert runner2.m_sent.get("out0", "metrics") == 15
    assert runner2.buffer.events == 0


async def test_a_permanent_error_moves_past_the_batch(tmp_path: Path) -> None:
    metrics = Registry()
    out = output(tmp_path, metrics, type="disk")
    out.fail = [PermanentError("mapping conflict")]
    pipeline, (runner,) = pipeline_of(out, metrics=metrics)
    async with running([runner]):
        await pipeline.submit(pts(2))
        await out.started_writing.wait()
        await anyio.wait_all_tasks_blocked()  # the refused batch is committed past before the next
        await pipeline.submit(pts(1, start=5))
    assert [p.ts for p in out.items] == [5]
    assert runner.buffer.events == 0


def test_buffer_options_are_checked_and_named() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "tape"}, "buffer.type must be 'memory' or 'disk', got 'tape'"),
        ({"when_full": "drop_oldest"}, "buffer.when_full must be 'block' or 'drop_newest', got 'drop_oldest'"),
        ({"max_size_bytes": -1}, "buffer.max_size_bytes must be >= 0, got -1"),
        ({"max_segment_bytes": 10}, "buffer.max_segment_bytes must be at least 4096, got 10"),
        ({"directory": "/x"}, "buffer.directory '/x' is set but buffer.type is 'memory'"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            msgspec.convert({"buffer": bad}, OutputConfig).validate()


def test_buffer_directories(tmp_path: Path) -> None:
    assert BufferConfig(type="disk").path_for(tmp_path, "ch", "logs") == tmp_path / "buffers" / "ch-logs"
    assert BufferConfig(type="disk", directory="/b").path_for(tmp_path, "ch", "logs") == Path("/b/logs")


async def test_stopping_cuts_a_long_retry_pause_short_for_a_disk_buffer(tmp_path: Path) -> None:
    metrics = Registry()
    config = OutputConfig(flush_interval_secs=0.001, retry_initial_secs=30, retry_max_secs=60,
                          buffer=BufferConfig(type="disk"))
    out = FakeOutput(config, make_ctx(tmp_path, metrics=metrics), durable=False)
    out.fail = [TransientError("down")] * 10
    pipeline, (runner,) = pipeline_of(out, metrics=metrics)
    with anyio.fail_after(5):  # not 30 s: the records wait on disk for the next start
        async with running([runner]):
            await pipeline.submit(pts(2))
            await out.started_writing.wait()
    assert runner.state == "stopped" and out.attempts == 2 and out.items == []


@pytest.mark.parametrize(("outputs", "message"), [
    ('[[outputs.sqlite]]\nbuffer = { type = "disk" }',
     "buffer.type = 'disk' is not allowed on 'sqlite': it is a durable store"),
    ('[[outputs.sqlite]]\n[[outputs.file]]\nbuffer = { type = "disk", directory = "/b" }\n'
     '[[outputs.file]]\nbuffer = { type = "disk", directory = "/b" }',
     "outputs 'file' and 'file.1' share the buffer directory '/b/metrics'"),
])
def test_the_daemon_refuses_buffer_configs_that_cannot_work(tmp_path: Path, outputs: str, message: str) -> None:
    text = f'[agent]\nrole = "metrics"\ndata_dir = "{tmp_path}"\n[[inputs.http_metrics]]\n{outputs}\n'
    daemon = Daemon(build_config(tomllib.loads(text), source="t.toml", environ={}), build_registry())
    with pytest.raises(ConfigError, match=re.escape(message)):
        daemon.build()


async def test_a_store_and_a_disk_buffer_are_waited_for_together(tmp_path: Path) -> None:
    metrics = Registry()
    store = FakeOutput(OutputConfig(), make_ctx(tmp_path, metrics=metrics), durable=True)
    store.fail = [PermanentError("bad row")]
    forwarder = output(tmp_path, metrics, type="disk")
    pipeline, runners = pipeline_of(store, forwarder, metrics=metrics)
    async with running(runners):
        with pytest.raises(PermanentError, match="bad row"):  # the store's error, not an ExceptionGroup
            await pipeline.submit(pts(2))
        await pipeline.submit(pts(1, start=7))
    assert [p.ts for p in store.items] == [7]
    assert [p.ts for p in forwarder.items] == [0, 1, 7]
