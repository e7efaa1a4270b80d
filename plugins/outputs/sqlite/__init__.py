"""The embedded store: every signal in SQLite files under the data directory, and the queries
the roles answer from them."""

from __future__ import annotations

import functools
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import anyio
from airisd_plugins.outputs.sqlite.base import SignalStore
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from airisd_plugins.outputs.sqlite.metrics_store import MetricStore
from airisd_plugins.outputs.sqlite.traces_store import TraceStore
from airisd_plugins.outputs.sqlite.writer_process import WriterProcess
from anyio.abc import TaskStatus

from airisd.errors import TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.pipeline import OutputConfig
from airisd.plugin import Output, Plugin

NS_PER_DAY = 86_400 * 1_000_000_000
CHECKPOINT_INTERVAL_SECS = 1.0


STORE_CLASSES: dict[Signal, type[SignalStore]] = {
    Signal.METRICS: MetricStore,
    Signal.LOGS: LogStore,
    Signal.TRACES: TraceStore,
}


class SqliteConfig(OutputConfig):
    ## Where the database files go; empty: the agent's data_dir.
    directory: str = ""
    ## Delete data older than this many days (0 keeps everything).
    retention_days: float = 30.0
    retention_check_interval_secs: float = 3600.0
    ## "normal": survives kill -9 of the daemon; "full": also survives power loss, slower.
    durability: str = "normal"
    # A store commits whatever is queued at once (group commit): no waiting for a full batch.
    batch_size: int = 50_000
    flush_interval_secs: float = 0.0
    max_queue_items: int = 200_000
    ## Where the writes run: "process" (a writer process per store, started with its first write:
    ## the SQLite work gets a core and a GIL of its own), "thread" (in the daemon), or "auto"
    ## (process when the machine has two CPUs or more).
    writer: str = "auto"

    def validate(self) -> None:
        super().validate()
        if self.writer not in ("auto", "process", "thread"):
            raise ValueError(f"writer must be 'auto', 'process' or 'thread', got {self.writer!r}")
        if self.durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', got {self.durability!r}")
        if self.retention_days < 0:
            raise ValueError(f"retention_days must be >= 0, got {self.retention_days}")
        if self.retention_check_interval_secs <= 0:
            raise ValueError("retention_check_interval_secs must be positive")


class SqliteOutput(Output):
    name: ClassVar[str] = "sqlite"
    Config: ClassVar[type[SqliteConfig]] = SqliteConfig
    description: ClassVar[str] = "Embedded store: metrics, logs and traces in SQLite (WAL), with queries"
    durable: ClassVar[bool] = True
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    config: SqliteConfig

    def __init__(self, config: SqliteConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        directory = Path(config.directory) if config.directory else Path(ctx.data_dir)
        sync = "FULL" if config.durability == "full" else "NORMAL"
        wanted = {Signal(s) for s in config.signals} if config.signals else set(Signal)
        self.stores: dict[Signal, SignalStore] = {
            sig: cls(directory, synchronous=sync)
            for sig, cls in STORE_CLASSES.items()
            if sig in wanted
        }
        self._locks = {sig: anyio.Lock() for sig in self.stores}
        self._open: set[Signal] = set()
        mode = config.writer
        if mode == "auto":
            mode = "process" if (os.cpu_count() or 1) >= 2 else "thread"
        self.writers: dict[Signal, WriterProcess] = (
            {sig: WriterProcess(store, background_checkpoint=True) for sig, store in self.stores.items()}
            if mode == "process" else {}
        )  # fmt: skip
        m = ctx.metrics
        self.m_retention = m.counter("store_retention_deleted_total", "Rows deleted by retention", ("signal",))

    async def start(self) -> None:
        for sig, store in self.stores.items():
            if sig in self.writers:  # the writer process opens it; the tables exist for queries now
                await anyio.to_thread.run_sync(store.create)
            else:
                await anyio.to_thread.run_sync(functools.partial(store.open, background_checkpoint=True))
            self._open.add(sig)

    async def write(self, batch: Batch) -> None:
        await self._write(batch, None)

    def writes_in_flight(self, signal: Signal) -> int:
        """Two with a writer process that takes requests back to back: while it commits one batch
        the next is already in its pipe, instead of waiting for the event loop to read the answer
        and send it (the writer sat idle ~20% of the time under logs ingest)."""
        writer = self.writers.get(signal)
        return 2 if writer is not None and writer.pipelines else 1

    def prepare_ahead(self, batch: Batch) -> bytes | None:
        """The store's prepared rows of a batch, encoded for its writer process, made by the request
        that queues the batch: the next write is then sent as soon as the last one is committed,
        instead of the writer waiting while the event loop prepares it (its largest idle gap)."""
        writer = self.writers.get(batch.signal)
        if writer is None or not writer.pipelines or not batch.items:
            return None
        try:
            return writer.prepare_part(batch.items)
        except Exception:  # e.g. an integer msgpack cannot carry: write() finds its own way
            return None

    async def write_prepared(self, batch: Batch, parts: list[Any]) -> None:
        await self._write(batch, parts)

    async def _write(self, batch: Batch, parts: list[Any] | None) -> None:
        """write(), with the parts prepare_ahead() made when given: through the writer process when
        there is one, else in a worker thread. SQLite's operational errors may pass: transient."""
        store = self.stores.get(batch.signal)
        if store is None:
            return
        writer = self.writers.get(batch.signal)
        try:
            if writer is not None:
                # No lock here: the writer orders its requests itself (a write and retention).
                # The encoding is Python work: it stays on the event loop's thread.
                request = writer.request_of(parts) if parts is not None else writer.encode(batch.items)
                if request is not None:
                    await writer.send_async(request)
                return
            async with self._locks[batch.signal]:
                await anyio.to_thread.run_sync(store.write_batches, [batch.items])
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, disk full, I/O: may pass
                raise TransientError(f"sqlite {batch.signal.value}: {exc}") from exc
            raise

    def query_api(self, signal: Signal) -> Any | None:
        return self.stores.get(signal)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._checkpoint_loop)
            if self.config.retention_days > 0:
                tg.start_soon(self._retention_loop)
            task_status.started()

    async def _retention_loop(self) -> None:
        while True:
            await self.enforce_retention()
            await anyio.sleep(self.config.retention_check_interval_secs)

    async def _checkpoint_loop(self) -> None:
        while True:
            await anyio.sleep(CHECKPOINT_INTERVAL_SECS)
            for sig, store in self.stores.items():
                if sig in self._open:
                    try:
                        await anyio.to_thread.run_sync(store.checkpoint)
                    except sqlite3.Error as exc:  # busy or I/O: the next round tries again
                        self.ctx.log.warning("checkpoint failed", extra={"kv": {"signal": sig.value,
                                                                                 "error": str(exc)}})

    async def enforce_retention(self) -> dict[str, int]:
        cutoff = self.ctx.clock.time_ns() - int(self.config.retention_days * NS_PER_DAY)
        deleted: dict[str, int] = {}
        for sig in self.stores:
            if sig not in self._open:
                continue
            async with self._locks[sig]:
                writer = self.writers.get(sig)
                if writer is not None and writer.running and writer.pipelines:
                    n = int(await writer.call_async(b"x", pickle.dumps(cutoff)))
                elif writer is not None and writer.running:  # its writes use the blocking calls too
                    n = await anyio.to_thread.run_sync(writer.delete_before, cutoff)
                else:
                    n = await anyio.to_thread.run_sync(self._delete_before, sig, cutoff)
            deleted[sig.value] = n
            if n:
                self.m_retention.inc(n, sig.value)
                self.ctx.log.info("retention deleted old data", extra={"kv": {"signal": sig.value, "rows": n}})
        return deleted

    def _delete_before(self, sig: Signal, cutoff: int) -> int:
        """Retention in the daemon's process: the thread writer's way, and the writer process's
        before its first write (rather than start a process for it: an idle daemon stays one)."""
        writer = self.writers.get(sig)
        if writer is None:
            return self.stores[sig].delete_before(cutoff)
        store = self.stores[sig]
        store.open(background_checkpoint=True)
        try:
            return store.delete_before(cutoff)
        finally:
            store.close()

    async def check(self) -> dict[str, Any]:
        """For /health/detailed: can each store be read?"""
        out: dict[str, Any] = {}
        for sig, store in self.stores.items():
            try:
                await anyio.to_thread.run_sync(store.probe)
                out[sig.value] = {"reachable": True, "path": str(store.path)}
                writer = self.writers.get(sig)
                if writer is not None:
                    out[sig.value]["writer"] = {"process": writer.pid, "starts": writer.starts}
            except Exception as exc:
                out[sig.value] = {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}
        return out

    async def shutdown(self) -> None:
        for sig in list(self._open):
            async with self._locks[sig]:
                writer = self.writers.get(sig)
                if writer is not None:
                    await anyio.to_thread.run_sync(writer.close)
                await anyio.to_thread.run_sync(self.stores[sig].close)
            self._open.discard(sig)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [SqliteOutput]


plugin_class = SqliteOutput
