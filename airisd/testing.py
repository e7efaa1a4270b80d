"""A test harness for plugin authors (and for airisd's own suite).

    from airisd.testing import run_plugin_conformance, MemorySink, FakeClock, make_context

    def test_my_output_keeps_the_contract():
        report = run_plugin_conformance(MyOutput, {"path": "/tmp/x.jsonl"})
        assert "errors classified" in report.passed

What it gives you:

- ``FakeClock``: a ``Clock`` that moves only when told; ``sleep()`` advances it (and yields once, so
  a loop that sleeps on it cannot starve the event loop).
- ``make_context()``: a ``PluginContext`` for one plugin outside the daemon; batches it emits are
  collected in ``ctx.emitted`` unless you pass your own ``emit``.
- ``MemorySource``: an input that emits the batches you give it into a pipeline.
- ``MemorySink``: an output that records every batch; ``fail_next(n, transient=True)`` makes its
  next ``n`` writes fail, so a test can watch the pipeline retry or drop.
- ``running_pipeline()``: the daemon's own ``Pipeline`` and ``OutputRunner`` around your
  processors and outputs, so a test sees what the daemon would do.
- ``run_plugin_conformance(plugin_class, config)``: the lifecycle contract of airisd.plugin, checked;
  returns a ``ConformanceReport`` or raises ``AssertionError`` saying which rule broke and how.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskStatus

from airisd.errors import AirisError, PermanentError, PluginError, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span
from airisd.pipeline import OutputConfig, OutputRunner, Pipeline
from airisd.plugin import (
    AlertChannel,
    Clock,
    Emit,
    Input,
    Output,
    Plugin,
    PluginConfig,
    PluginContext,
    Processor,
)
from airisd.selfmetrics import Registry

__all__ = [
    "ConformanceReport",
    "FakeClock",
    "MemorySink",
    "MemorySource",
    "check_plugin_conformance",
    "make_context",
    "run_plugin_conformance",
    "running_pipeline",
    "sample_batch",
]

UNKNOWN_KEY = "no_such_option_conformance"


class FakeClock(Clock):
    """A clock that moves only when told: ``sleep`` advances it instead of waiting."""

    def __init__(self, start_ns: int = 1_705_314_600_000_000_000) -> None:  # 2024-01-15T10:30:00Z
        self.now_ns = start_ns
        self.mono = 0.0
        self.slept: list[float] = []

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()  # a loop sleeping on us still lets others run

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1_000_000_000)
        self.mono += seconds


class CollectingContext(PluginContext):
    """A PluginContext whose default ``emit`` keeps every batch in ``emitted``."""

    emitted: list[Batch]


def make_context(
    data_dir: Path | str,
    *,
    clock: Clock | None = None,
    metrics: Registry | None = None,
    emit: Emit | None = None,
    settings: dict[str, Any] | None = None,
    name: str = "plugin",
) -> CollectingContext:
    emitted: list[Batch] = []

    async def collect(batch: Batch) -> None:
        emitted.append(batch)

    ctx = CollectingContext(
        data_dir=Path(data_dir),
        log=logging.getLogger(f"airisd.test.{name}"),
        metrics=metrics or Registry(),
        emit=emit or collect,
        clock=clock or FakeClock(),
        settings=settings or {"max_body_bytes": 1 << 20, "roles": ["metrics", "log", "trace", "alert"],
                              "signals": ["logs", "metrics", "traces"], "hostname": "test-host"},
    )
    ctx.emitted = emitted
    return ctx


def sample_batch(signal: Signal, *, ts: int = 1_705_314_600_000_000_000, n: int = 3) -> Batch:
    """A small valid batch of one signal, for writing to an output under test."""
    items: list[Any]
    if signal is Signal.METRICS:
        items = [Point(name="conformance_test", value=float(i), ts=ts + i, labels={"i": str(i)})
                 for i in range(n)]
    elif signal is Signal.LOGS:
        items = [LogRecord(ts=ts + i, level="INFO", message=f"conformance {i}", service="conformance")
                 for i in range(n)]
    else:
        items = [Span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id=f"{i + 1:016x}",
                      operation_name="GET /conformance", service_name="conformance",
                      start_ts=ts + i, end_ts=ts + i + 1_000_000) for i in range(n)]
    return Batch(signal, items)


# -- an in-memory source and sink ---------------------------------------------------------------


class MemorySource(Input):
    """An input that emits the batches it is given, through ``ctx.emit`` (into a pipeline)."""

    name: ClassVar[str] = "memory_source"
    description: ClassVar[str] = "Test input: emits batches handed to it"

    async def emit(self, batch: Batch) -> None:
        await self.ctx.emit(batch)

    async def emit_all(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            await self.ctx.emit(batch)


class MemorySinkConfig(OutputConfig):
    # Retries are quick in tests; the daemon's defaults are 0.1 s doubling to 30 s.
    retry_initial_secs: float = 0.001
    retry_max_secs: float = 0.01
    flush_interval_secs: float = 0.0


class MemorySink(Output):
    """An output that records the batches written to it; it can be told to fail."""

    name: ClassVar[str] = "memory_sink"
    Config: ClassVar[type[PluginConfig]] = MemorySinkConfig
    description: ClassVar[str] = "Test output: records batches in memory"
    durable: ClassVar[bool] = True  # write() returns once recorded, so submit() waits for it

    def __init__(self, config: PluginConfig | None = None, ctx: PluginContext | None = None) -> None:
        super().__init__(config or MemorySinkConfig(), ctx or make_context(tempfile.gettempdir()))
        self.batches: list[Batch] = []
        self.attempts = 0
        self.started = False
        self.shutdowns = 0
        self._failures: list[PluginError] = []
        self._written = anyio.Event()

    @property
    def items(self) -> list[Any]:
        return [i for b in self.batches for i in b.items]

    def fail_next(self, n: int = 1, *, transient: bool = True, message: str = "injected failure") -> None:
        """Make the next ``n`` writes raise TransientError (or PermanentError)."""
        cls = TransientError if transient else PermanentError
        self._failures.extend(cls(message) for _ in range(n))

    async def start(self) -> None:
        self.started = True

    async def write(self, batch: Batch) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        self.batches.append(batch)
        self._written.set()
        self._written = anyio.Event()

    async def wait_batches(self, n: int) -> None:
        """Wait until at least ``n`` batches have been written (wrap in anyio.fail_after)."""
        while len(self.batches) < n:
            await self._written.wait()

    async def shutdown(self) -> None:
        self.shutdowns += 1


@asynccontextmanager
async def running_pipeline(
    outputs: Sequence[Output],
    *,
    processors: Sequence[Processor] = (),
    metrics: Registry | None = None,
) -> AsyncIterator[Pipeline]:
    """The daemon's Pipeline with one OutputRunner per output and signal, running until the block
    ends; on exit every queue is drained (as at shutdown) before the runners stop."""
    metrics = metrics or Registry()
    procs: dict[Signal, list[Processor]] = {s: [p for p in processors if s in p.signals] for s in Signal}
    runners: dict[Signal, list[OutputRunner]] = {s: [] for s in Signal}
    for i, out in enumerate(outputs):
        for s in out.signals:
            runners[s].append(OutputRunner(out, s, f"{out.name}.{i}" if i else out.name, metrics))
    pipeline = Pipeline(procs, runners, metrics)
    async with anyio.create_task_group() as tg:
        for rs in runners.values():
            for r in rs:
                tg.start_soon(r.run)
        try:
            yield pipeline
        finally:
            pipeline.accepting = False
            for rs in runners.values():
                for r in rs:
                    await r.close()


# -- the conformance check ----------------------------------------------------------------------


@dataclass
class ConformanceReport:
    """What ``run_plugin_conformance`` checked and saw."""

    plugin: str
    passed: list[str] = field(default_factory=list)
    # Outputs: how each sample write ended, by signal: "ok", "TransientError: ..." or "PermanentError: ..."
    writes: dict[str, str] = field(default_factory=dict)
    emitted: list[Batch] = field(default_factory=list)  # inputs: what they emitted while running


class _Check:
    def __init__(self, report: ConformanceReport) -> None:
        self.report = report

    def ok(self, rule: str) -> None:
        self.report.passed.append(rule)

    def fail(self, rule: str, problem: str) -> AssertionError:
        return AssertionError(f"{self.report.plugin}: {rule}: {problem}")


def _describe(cls: type[Plugin]) -> str:
    return f"{cls.kind or '?'} plugin {cls.name or cls.__name__!r}"


async def check_plugin_conformance(
    plugin_class: type[Plugin],
    config: dict[str, Any] | None = None,
    *,
    data_dir: Path | str | None = None,
    clock: Clock | None = None,
    timeout_secs: float = 10.0,
    check_flushed: Callable[[Plugin], Any] | None = None,
) -> ConformanceReport:
    """The async form of ``run_plugin_conformance``, for use inside an async test."""
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="airisd-conformance-") as tmp:
            return await check_plugin_conformance(plugin_class, config, data_dir=tmp, clock=clock,
                                                  timeout_secs=timeout_secs, check_flushed=check_flushed)
    raw = dict(config or {})
    report = ConformanceReport(_describe(plugin_class))
    c = _Check(report)
    _check_metadata(plugin_class, c)
    cfg = _check_config(plugin_class, raw, c)

    def new() -> Plugin:
        ctx = make_context(data_dir, clock=clock or FakeClock(), name=plugin_class.name)
        return plugin_class(cfg, ctx)

    async def step(rule: str, fn: Callable[[], Awaitable[Any]], what: str) -> None:
        with anyio.move_on_after(timeout_secs) as scope:
            try:
                await fn()
            except Exception as exc:
                raise c.fail(rule, f"{what} raised {type(exc).__name__}: {exc}") from exc
        if scope.cancelled_caught:
            raise c.fail(rule, f"{what} did not finish within {timeout_secs} s")

    fresh = new()
    await step("shutdown without start", fresh.shutdown, "shutdown() without start() must be a no-op; it")
    await step("shutdown without start", fresh.shutdown, "a second shutdown() without start()")
    c.ok("shutdown without start is safe")

    plugin = new()
    await step("start", plugin.start, "start() with a valid config")
    c.ok("start")
    try:
        await _check_run(plugin, c, timeout_secs)
        if isinstance(plugin, Output):
            await _check_writes(plugin, c, timeout_secs)
    finally:
        await step("shutdown", plugin.shutdown, "shutdown()")
    if check_flushed is not None:
        try:
            result = check_flushed(plugin)
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as exc:
            raise c.fail("shutdown flushes", str(exc)) from exc
        if result is False:
            raise c.fail("shutdown flushes", "check_flushed returned False after shutdown()")
        c.ok("shutdown flushes")
    await step("shutdown twice", plugin.shutdown, "the second shutdown()")
    c.ok("shutdown is safe twice")
    report.emitted = list(getattr(plugin.ctx, "emitted", []))
    return report


def run_plugin_conformance(
    plugin_class: type[Plugin],
    config: dict[str, Any] | None = None,
    *,
    data_dir: Path | str | None = None,
    clock: Clock | None = None,
    timeout_secs: float = 10.0,
    check_flushed: Callable[[Plugin], Any] | None = None,
) -> ConformanceReport:
    """Check ``plugin_class`` against the lifecycle contract with ``config`` (a dict as in the TOML
    table); raise AssertionError naming the broken rule. Call it from a synchronous test.

    Rules: kind, name and description set; Config a PluginConfig that forbids unknown keys; the
    given config converts and validates; shutdown() without start() and twice is safe; start()
    succeeds; run() calls ``task_status.started()`` and returns when cancelled; an output writes a
    sample batch of each signal it takes, either accepting it or raising TransientError /
    PermanentError (anything else would be retried blindly); ``check_flushed(plugin)``, if given,
    is called after shutdown() and must not fail or return False.
    """
    async def main() -> ConformanceReport:
        return await check_plugin_conformance(plugin_class, config, data_dir=data_dir, clock=clock,
                                              timeout_secs=timeout_secs, check_flushed=check_flushed)

    return anyio.run(main, backend="asyncio")


def _check_metadata(cls: type[Plugin], c: _Check) -> None:
    if not isinstance(cls, type) or not issubclass(cls, (Input, Processor, Output, AlertChannel)):
        raise c.fail("kind", f"{cls!r} must subclass airisd.plugin.Input, Processor, Output or AlertChannel")
    if not cls.name or not cls.name.replace("_", "").isalnum() or cls.name != cls.name.lower():
        raise c.fail("name", f"{cls.__name__}.name {cls.name!r} must be a lower-case identifier")
    if not cls.description:
        raise c.fail("description", f"{cls.__name__}.description is empty (`airisd plugins list` shows it)")
    c.ok("metadata")


def _check_config(cls: type[Plugin], raw: dict[str, Any], c: _Check) -> PluginConfig:
    conf = cls.Config
    if not (isinstance(conf, type) and issubclass(conf, PluginConfig)):
        raise c.fail("config", f"{cls.__name__}.Config must subclass airisd.plugin.PluginConfig")
    if not conf.__struct_config__.forbid_unknown_fields:
        raise c.fail("unknown keys rejected", f"{conf.__name__} must forbid unknown fields")
    try:
        cfg = msgspec.convert(raw, conf, strict=False)
        cfg.validate()
    except (msgspec.ValidationError, ValueError, AirisError) as exc:
        raise c.fail("config validated", f"the given config is refused: {exc}") from exc
    c.ok("config validated")
    try:
        msgspec.convert({**raw, UNKNOWN_KEY: 1}, conf, strict=False)
    except msgspec.ValidationError as exc:
        if UNKNOWN_KEY not in str(exc):
            raise c.fail("unknown keys rejected", f"the error does not name the key: {exc}") from exc
    else:
        raise c.fail("unknown keys rejected", f"a config with {UNKNOWN_KEY!r} was accepted")
    c.ok("unknown keys rejected")
    return cfg


async def _check_run(plugin: Plugin, c: _Check, timeout_secs: float) -> None:
    with anyio.move_on_after(timeout_secs) as scope:
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(_run, plugin)
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {exc} before task_status.started()"
                raise c.fail("run", problem) from exc
            tg.cancel_scope.cancel()
    if scope.cancelled_caught:
        raise c.fail("run", f"did not call task_status.started() or did not stop when cancelled "
                            f"within {timeout_secs} s")
    c.ok("run reaches started and stops when cancelled")


async def _run(plugin: Plugin, *, task_status: TaskStatus[None]) -> None:
    await plugin.run(task_status=task_status)


async def _check_writes(plugin: Output, c: _Check, timeout_secs: float) -> None:
    for signal in sorted(plugin.signals, key=lambda s: s.value):
        try:
            with anyio.fail_after(timeout_secs):
                await plugin.write(sample_batch(signal))
            outcome = "ok"
        except TimeoutError as exc:
            raise c.fail("errors classified", f"write() of a {signal.value} batch did not finish within "
                                              f"{timeout_secs} s; time out inside and raise "
                                              "TransientError") from exc
        except (TransientError, PermanentError) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            raise c.fail("errors classified", f"write() of a valid {signal.value} batch raised "
                                              f"{type(exc).__name__}: {exc}; raise TransientError (retry) "
                                              "or PermanentError (drop) instead") from exc
        c.report.writes[signal.value] = outcome
    c.ok("errors classified")
