"""Inputs → processor chain → fan-out to outputs.

``Pipeline.submit(batch)`` is what inputs call. It runs the processors for the batch's signal,
then hands the batch to every output that takes that signal, and returns once each has *accepted*
it: a durable output (a store) accepts when the data is committed; a forwarding output accepts when
the batch is in its buffer. If any output's queue is full, nothing is enqueued anywhere and
``Backpressure`` is raised, which the HTTP layer turns into 503 + Retry-After: no silent drops.

Each output runs in an ``OutputRunner`` (one per output and signal): a bounded queue, a loop that
takes batches by size or time, and retries transient failures with jittered exponential backoff.
Permanent failures are counted and logged once per batch, never retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass

import anyio
import msgspec

from airisd.buffer.config import BufferConfig
from airisd.errors import Backpressure, PermanentError
from airisd.model import Batch, Signal
from airisd.plugin import Output, PluginConfig, Processor
from airisd.selfmetrics import Registry

log = logging.getLogger("airisd.pipeline")


class Ack:
    """Resolved once an output has accepted (or finally failed) a batch."""

    __slots__ = ("_event", "error")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        if not self._event.is_set():
            self.error = error
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        if self.error is not None:
            raise self.error


@dataclass
class RunnerSettings:
    batch_size: int = 1000
    flush_interval_secs: float = 1.0
    max_queue_items: int = 100_000
    retry_initial_secs: float = 0.1
    retry_max_secs: float = 30.0


def runner_settings(config: PluginConfig) -> RunnerSettings:
    """Outputs' configs share these option names (see OutputConfig)."""
    s = RunnerSettings()
    for name in ("batch_size", "flush_interval_secs", "max_queue_items", "retry_initial_secs", "retry_max_secs"):
        if hasattr(config, name):
            setattr(s, name, getattr(config, name))
    return s


class OutputConfig(PluginConfig):
    """Options every output has. Subclass it for an output's own Config."""

    alias: str = ""  # a name for this instance in logs, metrics and [stores]
    batch_size: int = 1000
    flush_interval_secs: float = 1.0
    max_queue_items: int = 100_000
    retry_initial_secs: float = 0.1
    retry_max_secs: float = 30.0
    signals: list[str] = msgspec.field(default_factory=list)  # empty: every signal it supports
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)  # see airisd/buffer/config.py

    def validate(self) -> None:
        self.buffer.validate()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.flush_interval_secs < 0:
            raise ValueError(f"flush_interval_secs must be >= 0, got {self.flush_interval_secs}")
        if self.max_queue_items < self.batch_size:
            raise ValueError(f"max_queue_items ({self.max_queue_items}) must be >= batch_size ({self.batch_size})")
        for s in self.signals:
            if s not in {x.value for x in Signal}:
                raise ValueError(f"signals: {s!r} is not one of metrics, logs, traces")


class OutputRunner:
    def __init__(self, output: Output, signal: Signal, name: str, metrics: Registry) -> None:
        self.output = output
        self.signal = signal
        self.name = name
        self.settings = runner_settings(output.config)
        self.durable = output.durable
        self._queue: deque[tuple[Batch, Ack | None]] = deque()
        self._queued_items = 0
        self._wakeup = anyio.Event()
        self._closing = False
        self._idle = anyio.Event()
        self._idle.set()
        self.last_error = ""
        self.state = "created"
        labels = (name, signal.value)
        self.m_sent = metrics.counter("output_sent_total", "Records written by an output", ("output", "signal"))
        self.m_failed = metrics.counter("output_failed_total", "Records an output dropped after a permanent error",
                                        ("output", "signal"))
        self.m_retries = metrics.counter("output_retries_total", "Write attempts retried", ("output", "signal"))
        self.m_latency = metrics.histogram("output_write_seconds", "Time of one write of a batch", ("output", "signal"))
        metrics.gauge("output_queue_items", "Records waiting in an output's queue", ("output", "signal")).set_function(
            lambda: self._queued_items, *labels)
        self._labels = labels

    # -- admission (request path) -------------------------------------------------------------
    @property
    def queued_items(self) -> int:
        return self._queued_items

    def has_room(self, n: int) -> bool:
        return self._queued_items + n <= self.settings.max_queue_items or self._queued_items == 0

    def enqueue(self, batch: Batch) -> Ack | None:
        """Queue a batch; return an Ack to wait on for durable outputs, None otherwise."""
        ack = Ack() if self.durable else None
        self._queue.append((batch, ack))
        self._queued_items += len(batch)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._wakeup.set()
        return ack

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        self.state = "running"
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    break
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            if not self.durable and not self._closing and self._queued_items < self.settings.batch_size:
                # Forwarders wait for a full batch or the flush interval, whichever is first.
                with anyio.move_on_after(self.settings.flush_interval_secs):
                    while self._queued_items < self.settings.batch_size and not self._closing:
                        await self._wakeup.wait()
                        self._wakeup = anyio.Event()
            await self._write_next()
        self.state = "stopped"

    def _take(self) -> tuple[list[Batch], list[Ack]]:
        """Take queued batches up to batch_size records (durable stores: everything queued, so
        concurrent requests share one commit)."""
        limit = self.settings.max_queue_items if self.durable else self.settings.batch_size
        batches: list[Batch] = []
        acks: list[Ack] = []
        taken = 0
        while self._queue and (taken == 0 or taken + len(self._queue[0][0]) <= limit):
            batch, ack = self._queue.popleft()
            batches.append(batch)
            if ack is not None:
                acks.append(ack)
            taken += len(batch)
        self._queued_items -= taken
        return batches, acks

    async def _write_next(self) -> None:
        batches, acks = self._take()
        if not batches:
            return
        merged = batches[0] if len(batches) == 1 else Batch(self.signal, [i for b in batches for i in b.items])
        delay = self.settings.retry_initial_secs
        while True:
            started = time.perf_counter()
            try:
                await self.output.write(merged)
            except PermanentError as exc:
                self.m_failed.inc(len(merged), *self._labels)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("output dropped a batch after a permanent error",
                          extra={"kv": {"output": self.name, "records": len(merged), "error": self.last_error}})
                for ack in acks:
                    ack.set(exc)
                return
            except Exception as exc:
                self.m_retries.inc(1, *self._labels)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("output write failed; retrying",
                            extra={"kv": {"output": self.name, "records": len(merged), "error": self.last_error,
                                          "retry_in_secs": round(delay, 3)}})
                await anyio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: replicas do not retry in step
                delay = min(delay * 2, self.settings.retry_max_secs)
                continue
            self.m_latency.observe(time.perf_counter() - started, *self._labels)
            self.m_sent.inc(len(merged), *self._labels)
            for ack in acks:
                ack.set()
            return

    async def close(self) -> None:
        """Stop taking new work; the loop drains the queue and exits."""
        self._closing = True
        self._wakeup.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass
class Pipeline:
    processors: dict[Signal, list[Processor]]
    runners: dict[Signal, list[OutputRunner]]
    metrics: Registry
    retry_after_secs: int = 1
    accepting: bool = True

    def __post_init__(self) -> None:
        self.m_in = self.metrics.counter("pipeline_records_total", "Records submitted to the pipeline", ("signal",))
        self.m_dropped = self.metrics.counter(
            "pipeline_filtered_total", "Records removed by processors (by configuration)", ("signal",))

    async def submit(self, batch: Batch) -> None:
        if not self.accepting:
            raise Backpressure("airisd is shutting down", retry_after_secs=self.retry_after_secs)
        self.m_in.inc(len(batch), batch.signal.value)
        before = len(batch)
        for processor in self.processors.get(batch.signal, ()):
            batch = processor.process(batch)
            if not batch.items:
                break
        if len(batch) != before:
            self.m_dropped.inc(before - len(batch), batch.signal.value)
        if not batch.items:
            return
        runners = self.runners.get(batch.signal, [])
        if not runners:
            raise Backpressure(f"no output is configured for {batch.signal.value}",
                               retry_after_secs=self.retry_after_secs)
        full = [r.name for r in runners if not r.has_room(len(batch))]
        if full:
            raise Backpressure(
                f"output queue full ({', '.join(full)}); retry later",
                retry_after_secs=self.retry_after_secs,
                details={"outputs": full},
            )
        acks = [ack for r in runners if (ack := r.enqueue(batch)) is not None]
        for ack in acks:
            await ack.wait()

    def queue_depths(self) -> dict[str, int]:
        return {f"{r.name}/{r.signal.value}": r.queued_items for rs in self.runners.values() for r in rs}
