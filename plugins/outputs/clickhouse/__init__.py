"""The clickhouse output: metrics, logs and spans into ClickHouse tables created and migrated on
start, with batch (column-oriented, Native) inserts; and ClickHouse as a store the roles query
(``[stores] metrics|log|trace = "clickhouse"``) through ``query_api``."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
from airisd_plugins.outputs.clickhouse.client import LazyClient
from airisd_plugins.outputs.clickhouse.config import ClickHouseConfig
from airisd_plugins.outputs.clickhouse.logs_query import ClickHouseLogStore
from airisd_plugins.outputs.clickhouse.metrics_query import ClickHouseMetricStore
from airisd_plugins.outputs.clickhouse.schema import migrate
from airisd_plugins.outputs.clickhouse.traces_query import ClickHouseTraceStore
from airisd_plugins.outputs.clickhouse.writer import SeriesIds, classify, columns_for, schema_gone

from airisd.errors import TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Output, Plugin


class ClickHouseOutput(Output):
    name: ClassVar[str] = "clickhouse"
    Config: ClassVar[type[ClickHouseConfig]] = ClickHouseConfig
    description: ClassVar[str] = "ClickHouse: metrics, logs and spans tables (MergeTree), batch inserts; a store"
    durable: ClassVar[bool] = False  # a forwarder: the runner (and its buffer) holds a batch until it is inserted
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    config: ClickHouseConfig

    def __init__(self, config: ClickHouseConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._writer = LazyClient(config)
        self._reader = LazyClient(config)
        self._lock = anyio.Lock()
        self._ids = SeriesIds()
        self._migrated = False
        self._rerun = False  # a table vanished: run every migration again
        self.applied: list[int] = []  # migration versions applied by this start
        self._metrics = ClickHouseMetricStore(self._reader, config.database)
        self._logs = ClickHouseLogStore(self._reader, config.database)
        self._traces = ClickHouseTraceStore(self._reader, config.database)

    async def start(self) -> None:
        """Connect and migrate. ClickHouse down is not fatal (the first write migrates, and the
        runner's buffer holds data until then); a refusal (auth, bad schema) fails the start."""
        try:
            await anyio.to_thread.run_sync(self._migrate)
        except TransientError as exc:
            self.ctx.log.warning("clickhouse not reachable at start; the first write will migrate",
                                 extra={"kv": {"host": self.config.host, "port": self.config.port, "error": str(exc)}})

    def _migrate(self) -> None:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            self.applied = migrate(self._writer(), self.config.database, self.config.retention_days,
                                   rerun=self._rerun)
        except ClickHouseError as exc:
            raise classify(exc, "migrate") from exc
        self._migrated = True
        self._rerun = False
        if self.applied:
            self.ctx.log.info("clickhouse schema migrated", extra={"kv": {"database": self.config.database,
                                                                          "versions": self.applied}})

    async def write(self, batch: Batch) -> None:
        if not batch.items:
            return
        async with self._lock:
            await anyio.to_thread.run_sync(self._insert, batch)

    def _insert(self, batch: Batch) -> None:
        """One INSERT per batch (worker thread; one at a time under the output's lock)."""
        if not self._migrated:
            self._migrate()
        table, names, types, columns = columns_for(batch.signal, batch.items, self._ids)
        try:  # the column types given: no DESCRIBE TABLE round trip before each insert
            self._writer().insert(table, columns, column_names=names, column_type_names=types,
                                  database=self.config.database, column_oriented=True)
        except Exception as exc:
            if schema_gone(exc):  # dropped under us: create it again before the retry
                self._migrated, self._rerun = False, True
                raise TransientError(f"clickhouse insert into {table}: the table is gone; migrating again") from exc
            raise classify(exc, f"insert into {table} ({len(batch)} rows)") from exc

    def query_api(self, signal: Signal) -> Any | None:
        if signal is Signal.METRICS:
            return self._metrics
        if signal is Signal.LOGS:
            return self._logs
        return self._traces

    async def check(self) -> dict[str, Any]:
        """For /health/detailed: does ClickHouse answer?"""
        try:
            version = await anyio.to_thread.run_sync(lambda: self._reader().command("SELECT version()"))
            return {"reachable": True, "server_version": str(version), "database": self.config.database}
        except Exception as exc:
            return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}

    async def shutdown(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._writer.close)
        await anyio.to_thread.run_sync(self._reader.close)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [ClickHouseOutput]


plugin_class = ClickHouseOutput
