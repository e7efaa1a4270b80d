"""Inputs → processor chain → fan-out to outputs.

``Pipeline.submit(batch)`` is what inputs call. It runs the processors for the batch's signal,
then hands the batch to every output that takes that signal, and returns once each has *accepted*
it: a durable output (a store) accepts when the data is committed; a forwarding output accepts when
the batch is in its buffer (memory: queued; disk: fsynced, see airisd/buffer/). If an output's
buffer is full and its ``buffer.when_full`` is ``block`` (the default), nothing is enqueued anywhere
and ``Backpressure`` is raised, which the HTTP layer turns into 503 + Retry-After: no silent drops.
With ``drop_newest`` that output drops the batch and counts it in ``output_dropped_total``.

Each output runs in an ``OutputRunner`` (one per output and signal): its buffer, and a loop that
takes batches in order by size or time, retries transient failures with jittered exponential
backoff, and commits them out of the buffer once written. Permanent failures are counted and
logged once per batch, never retried.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from itertools import chain
from typing import Any

import anyio
import msgspec

from airisd.buffer.base import Ack, Buffer, Offer, Waiter
from airisd.buffer.config import BufferConfig
from airisd.buffer.disk import DiskBuffer
from airisd.buffer.memory import MemoryBuffer
from airisd.errors import Backpressure, PermanentError, TransientError
from airisd.model import Batch, Signal
from airisd.plugin import Output, PluginConfig, Processor
from airisd.selfmetrics import Registry
from airisd.turns import give_up_turn

log = logging.getLogger("airisd.pipeline")

__all__ = ["Ack", "OutputConfig", "OutputRunner", "Pipeline", "RunnerSettings", "runner_settings"]
DROP_LOG_INTERVAL_SECS = 10.0


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
    """One output for one signal: its buffer, and the loop that delivers from it in order."""

    def __init__(self, output: Output, signal: Signal, name: str, metrics: Registry,
                 *, buffer: Buffer | None = None) -> None:
        self.output = output
        self.signal = signal
        self.name = name
        self.settings = runner_settings(output.config)
        self.durable = output.durable
        self.buffer_config: BufferConfig = getattr(output.config, "buffer", None) or BufferConfig()
        self.buffer: Buffer = buffer or self._make_buffer()
        self.buffer.on_data = self._wake
        self._opened = False
        self._wakeup = anyio.Event()
        self._closing = False
        self._stop_event: anyio.Event | None = None
        self._idle = anyio.Event()
        self._idle.set()
        self.last_error = ""
        self.state = "created"
        self.dropped = 0
        self._drops_unlogged = 0
        self._drop_logged_at = -DROP_LOG_INTERVAL_SECS
        labels = (name, signal.value)
        ls = ("output", "signal")
        self.m_sent = metrics.counter("output_sent_total", "Records written by an output", ls)
        self.m_failed = metrics.counter("output_failed_total", "Records an output dropped after a permanent error", ls)
        self.m_retries = metrics.counter("output_retries_total", "Write attempts retried", ls)
        self.m_dropped = metrics.counter("output_dropped_total", "Records an output's buffer refused and dropped "
                                         "(when_full = drop_newest) or could not read back", (*ls, "reason"))
        self.m_corrupt = metrics.counter("output_buffer_corrupt_segments_total",
                                         "Disk buffer segments moved aside as corrupt", ls)
        self.m_latency = metrics.histogram("output_write_seconds", "Time of one write of a batch", ls)
        metrics.gauge("output_queue_items", "Records waiting in an output's buffer, not yet taken for a write",
                      ls).set_function(lambda: self.buffer.unread_items, *labels)
        metrics.gauge("output_buffered_events", "Records in an output's buffer, including the write in flight",
                      ls).set_function(lambda: self.buffer.events, *labels)
        metrics.gauge("output_buffered_bytes", "Bytes in an output's buffer (disk: on disk, not yet delivered)",
                      ls).set_function(lambda: self.buffer.bytes, *labels)
        metrics.gauge("output_buffer_oldest_age_seconds", "Age of the oldest record in an output's buffer",
                      ls).set_function(self.buffer.oldest_age_secs, *labels)
        if isinstance(self.buffer, DiskBuffer):
            self.buffer.on_corrupt = lambda n: self.m_corrupt.inc(n, *labels)
            self.buffer.on_unreadable = lambda n: self.m_dropped.inc(n, *labels, "corrupt")
        self._labels = labels
        self._prepares_ahead = (isinstance(self.buffer, MemoryBuffer)
                                and type(self.output).prepare_ahead is not Output.prepare_ahead)
        self._pipelines = isinstance(self.buffer, MemoryBuffer) and self.durable  # see writes_in_flight
        self._writing = 0  # writes in flight, from take to commit

    def _make_buffer(self) -> Buffer:
        bc = self.buffer_config
        if bc.type == "disk":
            directory = bc.path_for(self.output.ctx.data_dir, self.name, self.signal.value)
            return DiskBuffer(directory, max_bytes=bc.limit_bytes, max_segment_bytes=bc.max_segment_bytes,
                              name=f"{self.name}/{self.signal.value}")
        return MemoryBuffer(max_items=self.settings.max_queue_items, max_bytes=bc.limit_bytes, durable=self.durable)

    # -- admission (request path) -------------------------------------------------------------
    @property
    def queued_items(self) -> int:
        return self.buffer.unread_items

    @property
    def when_full(self) -> str:
        return self.buffer_config.when_full

    def has_room(self, offer: Offer | int) -> bool:
        if isinstance(offer, int):  # the old call: a count of records
            offer = Offer(Batch(self.signal, [None] * offer))
        return self.buffer.has_room(offer)

    def enqueue(self, batch: Batch | Offer) -> Waiter | None:
        """Put a batch in the buffer; return what to wait on before acknowledging, or None."""
        offer = batch if isinstance(batch, Offer) else Offer(batch)
        if self._prepares_ahead:  # only a memory buffer keeps the Batch object, and with it the part
            try:
                part = self.output.prepare_ahead(offer.batch)
            except Exception:  # a plugin's bug must not fail the request: write() still works
                log.exception("prepare_ahead failed; the batch is written without it",
                              extra={"kv": {"output": self.name}})
                part = None
            if part is not None:
                if offer.batch.ahead is None:
                    offer.batch.ahead = {}
                offer.batch.ahead[self.name] = part
        return self.buffer.put(offer)

    def drop(self, offer: Offer, reason: str) -> None:
        """when_full = drop_newest: count the batch, and log at most every DROP_LOG_INTERVAL_SECS."""
        self.m_dropped.inc(len(offer.batch), *self._labels, reason)
        self.dropped += len(offer.batch)
        self._drops_unlogged += len(offer.batch)
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_INTERVAL_SECS:
            log.warning("output buffer full; dropping newest records (when_full = drop_newest)",
                        extra={"kv": {"output": self.name, "signal": self.signal.value,
                                      "records": self._drops_unlogged, "reason": reason}})
            self._drops_unlogged = 0
            self._drop_logged_at = now

    def _wake(self) -> None:
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wakeup.set()

    # -- the loop -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the buffer (a disk buffer recovers here). The daemon calls it before it listens."""
        if not self._opened:
            await self.buffer.open()
            self._opened = True

    async def run(self) -> None:
        await self.open()
        self.state = "running"
        try:
            depth = self.output.writes_in_flight(self.signal) if self._pipelines else 1
            if depth <= 1:
                await self._deliver()
            else:  # loops that each take what is queued: up to depth writes outstanding
                async with anyio.create_task_group() as tg:
                    for _ in range(depth):
                        tg.start_soon(self._deliver)
        finally:
            self._idle.set()
            with anyio.CancelScope(shield=True):
                await self.buffer.close()
            self._opened = False
            self.state = "stopped"

    async def _deliver(self) -> None:
        """Take and write until closed and drained (or a disk buffer's output fails while stopping)."""
        while True:
            if not self.buffer.unread_items:
                if not self._writing:
                    self._idle.set()
                if self._closing:
                    break
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            if not self.durable and not self._closing and self.buffer.unread_items < self.settings.batch_size:
                # Forwarders wait for a full batch or the flush interval, whichever is first.
                with anyio.move_on_after(self.settings.flush_interval_secs):
                    while self.buffer.unread_items < self.settings.batch_size and not self._closing:
                        await self._wakeup.wait()
                        self._wakeup = anyio.Event()
            self._writing += 1
            try:
                if not await self._write_next():
                    break
            finally:
                self._writing -= 1

    async def _write_next(self) -> bool:
        """Deliver the next batch; False when stopping with the output failing and the data safe
        on disk (it is delivered after the restart instead of holding up the shutdown)."""
        limit = self.settings.max_queue_items if self.durable else self.settings.batch_size
        taken = await self.buffer.take(limit)
        if not taken.batches:  # nothing readable (a disk record the disk lost): move past it
            await self.buffer.commit(taken)
            return True
        batches = taken.batches
        merged = batches[0] if len(batches) == 1 else Batch(self.signal,
                                                             list(chain.from_iterable(b.items for b in batches)))
        parts = [b.ahead.get(self.name) if b.ahead else None for b in batches] if self._prepares_ahead else [None]
        delay = self.settings.retry_initial_secs
        while True:
            started = time.perf_counter()
            try:
                if None in parts:
                    await self.output.write(merged)
                else:
                    await self.output.write_prepared(merged, parts)
            except PermanentError as exc:
                self.m_failed.inc(len(merged), *self._labels)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("output dropped a batch after a permanent error",
                          extra={"kv": {"output": self.name, "records": len(merged), "error": self.last_error}})
                await self.buffer.commit(taken, exc)
                return True
            except Exception as exc:
                self.m_retries.inc(1, *self._labels)
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._closing and self.buffer.type == "disk":
                    log.warning("output failing while stopping; records stay in the disk buffer",
                                extra={"kv": {"output": self.name, "buffered": self.buffer.events,
                                              "error": self.last_error}})
                    return False
                pause = delay * random.uniform(0.5, 1.5)  # jitter: replicas do not retry in step
                asked = exc.retry_after_secs if isinstance(exc, TransientError) else 0.0
                if asked > 0:  # the backend said when (Retry-After): not sooner, but never past the cap
                    pause = max(pause, min(asked, self.settings.retry_max_secs))
                log.warning("output write failed; retrying",
                            extra={"kv": {"output": self.name, "records": len(merged), "error": self.last_error,
                                          "retry_in_secs": round(pause, 3)}})
                if self.buffer.type == "disk":  # stopping cuts the pause short: the data is safe on disk
                    with anyio.move_on_after(pause):
                        await self._stop_requested().wait()
                else:
                    await anyio.sleep(pause)
                delay = min(delay * 2, self.settings.retry_max_secs)
                continue
            self.m_latency.observe(time.perf_counter() - started, *self._labels)
            self.m_sent.inc(len(merged), *self._labels)
            await self.buffer.commit(taken)
            return True

    def _stop_requested(self) -> anyio.Event:
        if self._stop_event is None:
            self._stop_event = anyio.Event()
            if self._closing:
                self._stop_event.set()
        return self._stop_event

    async def close(self) -> None:
        """Stop taking new work; the loop drains the buffer and exits (a disk buffer stops draining
        at the first failed write: its records wait on disk for the next start)."""
        self._closing = True
        self._stop_requested().set()
        self._wakeup.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def health(self) -> dict[str, Any]:
        """The /health/detailed entry of this output and signal."""
        labels = self._labels
        return {
            "output": self.name, "plugin": self.output.name, "signal": self.signal.value, "state": self.state,
            "buffer": {**self.buffer.health(), "when_full": self.when_full,
                       "max_size_bytes": self.buffer_config.limit_bytes},
            "sent": self.m_sent.get(*labels), "failed": self.m_failed.get(*labels),
            "retried": self.m_retries.get(*labels),
            "dropped": self.dropped,
            "buffered_events": self.buffer.events, "buffered_bytes": self.buffer.bytes,
            "oldest_age_seconds": round(self.buffer.oldest_age_secs(), 3),
            "corrupt_segments": self.m_corrupt.get(*labels),
            "last_error": self.last_error or getattr(self.buffer, "last_error", ""),
        }


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
        offer = Offer(batch)
        full = [r for r in runners if not r.has_room(offer)]
        blocked = [r.name for r in full if r.when_full == "block"]
        if blocked:
            raise Backpressure(
                f"output buffer full ({', '.join(blocked)}); retry later",
                retry_after_secs=self.retry_after_secs,
                details={"outputs": blocked},
            )
        waiters = []
        for r in runners:
            if r in full:
                r.drop(offer, "buffer_full")
            elif (waiter := r.enqueue(offer)) is not None:
                waiters.append(waiter)
        give_up_turn()  # queued: the runners, just woken, go before the next request's parse
        if len(waiters) == 1:
            await waiters[0].wait()
        elif waiters:  # a store's commit and a disk buffer's fsync overlap instead of adding up
            await _wait_all(waiters)

    def queue_depths(self) -> dict[str, int]:
        return {f"{r.name}/{r.signal.value}": r.queued_items for rs in self.runners.values() for r in rs}


async def _wait_all(waiters: list[Waiter]) -> None:
    """Wait for every waiter concurrently; raise the first error (not an ExceptionGroup)."""
    errors: list[BaseException] = []

    async def one(waiter: Waiter) -> None:
        try:
            await waiter.wait()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for waiter in waiters:
            tg.start_soon(one, waiter)
    if errors:
        raise errors[0]
