"""The pipeline with a fake output: durable acks, backpressure, retries, processor order, batching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from airisd_plugins.processors.filter import FilterConfig, FilterProcessor

from airisd.errors import Backpressure, PermanentError, TransientError
from airisd.model import Batch, Point, Signal
from airisd.pipeline import Ack, OutputConfig, OutputRunner, Pipeline, runner_settings
from airisd.plugin import Output, PluginConfig, Processor
from airisd.selfmetrics import Registry
from tests.conftest import make_ctx

pytestmark = pytest.mark.anyio


class FakeOutput(Output):
    """Records every write; ``gate`` holds writes until set; ``fail`` is raised by the next writes."""

    name: ClassVar[str] = "fake"
    Config: ClassVar[type[PluginConfig]] = OutputConfig

    def __init__(self, config: OutputConfig, ctx: Any, *, durable: bool = True) -> None:
        super().__init__(config, ctx)
        self.durable = durable  # type: ignore[misc]
        self.writes: list[list[Any]] = []
        self.attempts = 0
        self.fail: list[BaseException] = []
        self.gate: anyio.Event | None = None
        self.started_writing = anyio.Event()

    async def write(self, batch: Batch) -> None:
        self.attempts += 1
        self.started_writing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise self.fail.pop(0)
        self.writes.append(list(batch.items))

    @property
    def items(self) -> list[Any]:
        return [i for w in self.writes for i in w]


class Tag(Processor):
    """Appends its tag to every point's ``seen`` label: shows the order processors ran in."""

    name: ClassVar[str] = "tag"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def process(self, batch: Batch) -> Batch:
        for p in batch.items:
            p.labels["seen"] = p.labels.get("seen", "") + self.tag
        return batch


def pts(n: int, start: int = 0, name: str = "m") -> Batch:
    return Batch(Signal.METRICS, [Point(name=name, value=float(i), ts=i) for i in range(start, start + n)])


def make_output(tmp_path: Path, metrics: Registry, *, durable: bool = True, **cfg: Any) -> FakeOutput:
    config = OutputConfig(**cfg)
    config.validate()
    return FakeOutput(config, make_ctx(tmp_path, metrics=metrics), durable=durable)


def make_pipeline(
    outputs: list[FakeOutput],
    metrics: Registry,
    processors: list[Processor] = (),  # type: ignore[assignment]
) -> tuple[Pipeline, list[OutputRunner]]:
    runners = [OutputRunner(o, Signal.METRICS, f"fake.{i}", metrics) for i, o in enumerate(outputs)]
    pipeline = Pipeline({Signal.METRICS: list(processors)}, {Signal.METRICS: runners}, metrics)
    return pipeline, runners


@asynccontextmanager
async def running(runners: list[OutputRunner]) -> AsyncIterator[anyio.abc.TaskGroup]:
    """Run the runners' loops; on exit close them and let them drain, as the daemon does."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for r in runners:
                tg.start_soon(r.run)
            yield tg
            for r in runners:
                await r.close()


@pytest.fixture
def metrics() -> Registry:
    return Registry()


async def test_durable_ack_waits_for_the_write(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics)
    out.gate = anyio.Event()
    pipeline, runners = make_pipeline([out], metrics)
    done = anyio.Event()

    async def submit() -> None:
        await pipeline.submit(pts(3))
        done.set()

    async with running(runners) as tg:
        tg.start_soon(submit)
        await out.started_writing.wait()
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()  # the write has begun but not finished: no ack yet
        assert out.items == []
        out.gate.set()
        await done.wait()
        assert [p.ts for p in out.items] == [0, 1, 2]  # acknowledged means written
    assert runners[0].m_sent.get("fake.0", "metrics") == 3


async def test_non_durable_output_accepts_once_queued(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, durable=False, batch_size=100, flush_interval_secs=0.01)
    pipeline, runners = make_pipeline([out], metrics)
    await pipeline.submit(pts(2))  # runner not running: it returns once queued
    assert runners[0].queued_items == 2
    async with running(runners):
        pass  # closing drains the queue
    assert len(out.items) == 2
    assert runners[0].queued_items == 0


async def test_forwarder_flushes_a_small_batch_after_the_interval(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, durable=False, batch_size=1000, flush_interval_secs=0.02)
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners):
        await pipeline.submit(pts(1))
        with anyio.fail_after(5):
            await out.started_writing.wait()
        assert len(out.items) == 1


async def test_backpressure_enqueues_nothing_anywhere(tmp_path: Path, metrics: Registry) -> None:
    roomy = make_output(tmp_path, metrics, durable=False, max_queue_items=1000)
    tight = make_output(tmp_path, metrics, durable=False, batch_size=5, max_queue_items=5)
    pipeline, (r_roomy, r_tight) = make_pipeline([roomy, tight], metrics)
    pipeline.retry_after_secs = 7
    await pipeline.submit(pts(4))  # loops not running: the queues only fill
    assert (r_roomy.queued_items, r_tight.queued_items) == (4, 4)
    with pytest.raises(Backpressure) as exc:
        await pipeline.submit(pts(2))
    assert exc.value.status == 503
    assert exc.value.retry_after_secs == 7
    assert exc.value.details == {"outputs": ["fake.1"]}
    assert (r_roomy.queued_items, r_tight.queued_items) == (4, 4)  # not half-delivered to the roomy one
    await pipeline.submit(pts(1))  # what fits still goes
    assert (r_roomy.queued_items, r_tight.queued_items) == (5, 5)
    async with running([r_roomy, r_tight]):
        pass
    assert len(roomy.items) == len(tight.items) == 5


async def test_an_oversized_batch_is_accepted_into_an_empty_queue(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, durable=False, batch_size=2, max_queue_items=2)
    pipeline, runners = make_pipeline([out], metrics)
    await pipeline.submit(pts(5))  # would never fit otherwise: accepted whole, written whole
    with pytest.raises(Backpressure):
        await pipeline.submit(pts(1))
    async with running(runners):
        pass
    assert [len(w) for w in out.writes] == [5]


async def test_shutting_down_or_no_output_is_backpressure(tmp_path: Path, metrics: Registry) -> None:
    pipeline = Pipeline({}, {Signal.METRICS: []}, metrics)
    with pytest.raises(Backpressure, match="no output"):
        await pipeline.submit(pts(1))
    pipeline.accepting = False
    with pytest.raises(Backpressure, match="shutting down"):
        await pipeline.submit(pts(1))


async def test_transient_errors_are_retried_until_delivered(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, retry_initial_secs=0.001, retry_max_secs=0.004)
    out.fail = [
        TransientError("timeout"),
        TransientError("refused"),
        OSError("reset"),
        TransientError("again"),
    ]
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners):
        await pipeline.submit(pts(3))
    assert out.attempts == 5
    assert len(out.items) == 3
    assert runners[0].m_retries.get("fake.0", "metrics") == 4
    assert runners[0].m_failed.get("fake.0", "metrics") == 0
    assert runners[0].last_error == "TransientError: again"


async def test_permanent_errors_are_not_retried_and_are_counted(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, retry_initial_secs=0.001)
    out.fail = [PermanentError("mapping conflict")]
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners):
        with pytest.raises(PermanentError, match="mapping conflict"):
            await pipeline.submit(pts(4))  # the submitter learns it was not stored
        await pipeline.submit(pts(1, start=10))  # the next batch goes through
    assert out.attempts == 2
    assert [p.ts for p in out.items] == [10]
    assert runners[0].m_failed.get("fake.0", "metrics") == 4
    assert runners[0].m_retries.get("fake.0", "metrics") == 0
    assert "output_failed_total" in metrics.render()


async def test_processors_run_in_order_before_every_output(tmp_path: Path, metrics: Registry) -> None:
    a, b = make_output(tmp_path, metrics), make_output(tmp_path, metrics)
    pipeline, runners = make_pipeline([a, b], metrics, [Tag("1"), Tag("2"), Tag("3")])
    async with running(runners):
        await pipeline.submit(pts(2))
    assert [p.labels["seen"] for p in a.items] == ["123", "123"]
    assert [p.labels["seen"] for p in b.items] == ["123", "123"]


async def test_filtered_out_batches_reach_no_output(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics)
    config = FilterConfig(names=["m"])
    drop_all = FilterProcessor(config, make_ctx(tmp_path))
    pipeline, runners = make_pipeline([out], metrics, [drop_all, Tag("x")])
    async with running(runners):
        await pipeline.submit(pts(3))
        await pipeline.submit(pts(2, name="kept"))
    assert [p.name for p in out.items] == ["kept", "kept"]
    assert pipeline.m_dropped.get("metrics") == 3
    assert pipeline.m_in.get("metrics") == 5


async def test_forwarder_merges_queued_batches_up_to_batch_size(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, durable=False, batch_size=5, flush_interval_secs=0.01)
    pipeline, runners = make_pipeline([out], metrics)
    for n in (2, 2, 2, 3, 7, 1):
        await pipeline.submit(pts(n))
    async with running(runners):
        pass
    assert [len(w) for w in out.writes] == [4, 5, 7, 1]  # never over 5, except a batch that is alone
    assert len(out.items) == 17


async def test_store_group_commits_everything_queued(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, batch_size=5, max_queue_items=100)
    out.gate = anyio.Event()
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners) as tg:
        tg.start_soon(pipeline.submit, pts(1))
        await out.started_writing.wait()  # the first write is in progress...
        for n in (3, 4, 5):
            tg.start_soon(pipeline.submit, pts(n))  # ...while three more requests queue up
        await anyio.wait_all_tasks_blocked()
        assert runners[0].queued_items == 12
        out.gate.set()
    assert [len(w) for w in out.writes] == [1, 12]  # one commit for the three waiting requests


class AheadOutput(FakeOutput):
    """Prepares each batch ahead (its first and last ts, or nothing for a batch starting at 100) and
    records which parts each write got."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parts: list[list[Any] | None] = []

    def prepare_ahead(self, batch: Batch) -> Any:
        first = batch.items[0].ts
        return None if first == 100 else (first, batch.items[-1].ts)

    async def write(self, batch: Batch) -> None:
        self.parts.append(None)
        await super().write(batch)

    async def write_prepared(self, batch: Batch, parts: list[Any]) -> None:
        self.parts.append(parts)
        await super().write(batch)


async def test_parts_prepared_ahead_reach_the_write_in_order(tmp_path: Path, metrics: Registry) -> None:
    config = OutputConfig(batch_size=50, max_queue_items=100)
    out = AheadOutput(config, make_ctx(tmp_path, metrics=metrics))
    out.gate = anyio.Event()
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners) as tg:
        tg.start_soon(pipeline.submit, pts(1))
        await out.started_writing.wait()
        for start, n in ((10, 3), (20, 4)):
            tg.start_soon(pipeline.submit, pts(n, start))
        await anyio.wait_all_tasks_blocked()
        out.gate.set()
    assert out.parts == [[(0, 0)], [(10, 12), (20, 23)]]  # one part per merged batch, in item order
    assert [p.ts for p in out.items] == [0, 10, 11, 12, 20, 21, 22, 23]


async def test_a_batch_without_its_part_is_written_the_plain_way(tmp_path: Path, metrics: Registry) -> None:
    out = AheadOutput(OutputConfig(batch_size=50, max_queue_items=100), make_ctx(tmp_path, metrics=metrics))
    out.gate = anyio.Event()
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners) as tg:
        tg.start_soon(pipeline.submit, pts(1))
        await out.started_writing.wait()
        for start in (10, 100):  # the batch at 100 has no part: the merged write cannot use parts
            tg.start_soon(pipeline.submit, pts(2, start))
        await anyio.wait_all_tasks_blocked()
        out.gate.set()
    assert out.parts == [[(0, 0)], None]
    assert [p.ts for p in out.items] == [0, 10, 11, 100, 101]


def test_runner_settings_come_from_the_output_config() -> None:
    s = runner_settings(OutputConfig(batch_size=7, flush_interval_secs=0.5, max_queue_items=70))
    assert (s.batch_size, s.flush_interval_secs, s.max_queue_items) == (7, 0.5, 70)


@pytest.mark.parametrize(
    "cfg",
    [
        {"batch_size": 0},
        {"flush_interval_secs": -1},
        {"batch_size": 10, "max_queue_items": 5},
        {"signals": ["x"]},
    ],
)
def test_bad_output_options_are_refused(cfg: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OutputConfig(**cfg).validate()


async def test_ack_delivers_the_first_outcome_only() -> None:
    ack = Ack()
    ack.set(PermanentError("no"))
    ack.set()  # ignored: the outcome is already decided
    with pytest.raises(PermanentError):
        await ack.wait()
    ok = Ack()
    ok.set()
    await ok.wait()
    assert ok.error is None


async def test_a_failing_prepare_ahead_costs_only_the_shortcut(tmp_path: Path, metrics: Registry) -> None:
    class Broken(AheadOutput):
        def prepare_ahead(self, batch: Batch) -> Any:
            raise RuntimeError("bug")

    out = Broken(OutputConfig(batch_size=50, max_queue_items=100), make_ctx(tmp_path, metrics=metrics))
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners):
        await pipeline.submit(pts(2))
    assert out.parts == [None]
    assert [p.ts for p in out.items] == [0, 1]


async def test_a_retry_after_is_waited_out_up_to_the_cap(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics, retry_initial_secs=0.001, retry_max_secs=0.5)
    out.fail = [TransientError("429", retry_after_secs=0.3), TransientError("429", retry_after_secs=3600)]
    tried: list[float] = []
    write = out.write

    async def timed(batch: Batch) -> None:
        tried.append(anyio.current_time())
        await write(batch)

    out.write = timed  # type: ignore[method-assign]
    pipeline, runners = make_pipeline([out], metrics)
    async with running(runners):
        await pipeline.submit(pts(2))
    assert len(out.items) == 2 and len(tried) == 3
    first, second = tried[1] - tried[0], tried[2] - tried[1]
    assert 0.3 <= first < 0.45  # the server's 0.3 s, not the 1 ms backoff
    assert 0.5 <= second < 0.65  # an hour asked: the cap (retry_max_secs) wins


class PipelinedOutput(FakeOutput):
    """Takes a second write while the first is out, as the SQLite writer process does."""

    def writes_in_flight(self, signal: Signal) -> int:
        return 2


async def test_two_writes_in_flight_each_acked_by_its_own_commit(tmp_path: Path, metrics: Registry) -> None:
    out = PipelinedOutput(OutputConfig(), make_ctx(tmp_path, metrics=metrics), durable=True)
    out.gate = anyio.Event()
    pipeline, (runner,) = make_pipeline([out], metrics)
    done: list[str] = []

    async def submit(name: str, batch: Batch) -> None:
        await pipeline.submit(batch)
        done.append(name)

    async with running([runner]) as tg:
        tg.start_soon(submit, "first", pts(2))
        await out.started_writing.wait()
        tg.start_soon(submit, "second", pts(3, start=10))
        with anyio.fail_after(5):
            while out.attempts < 2:  # noqa: ASYNC110  (the second write starts while the first is held)
                await anyio.sleep(0.01)
        assert runner.buffer.events == 5 and not runner._idle.is_set() and done == []
        out.gate.set()
        await runner.wait_idle()
        assert runner.buffer.events == 0 and sorted(done) == ["first", "second"]
    assert sorted(p.ts for p in out.items) == [0, 1, 10, 11, 12]


async def test_one_write_at_a_time_unless_the_output_asks(tmp_path: Path, metrics: Registry) -> None:
    out = make_output(tmp_path, metrics)
    out.gate = anyio.Event()
    pipeline, (runner,) = make_pipeline([out], metrics)
    async with running([runner]) as tg:
        tg.start_soon(pipeline.submit, pts(1))
        await out.started_writing.wait()
        tg.start_soon(pipeline.submit, pts(1, start=5))
        await anyio.sleep(0.1)
        assert out.attempts == 1  # the second batch waits for the first write
        out.gate.set()
    assert [p.ts for p in out.items] == [0, 5]
