"""The clickhouse output against the real ClickHouse engine (chdb) over a real socket, through our
HTTP fixture (tests/chdb_http_server.py): schema and migrations, round trips, error mapping."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import clickhouse_connect
import msgspec
import pytest
from airisd_plugins.outputs.clickhouse import ClickHouseConfig, ClickHouseOutput
from airisd_plugins.outputs.clickhouse.schema import MIGRATIONS, Migration, migrate
from airisd_plugins.outputs.clickhouse.writer import SeriesIds, classify, metric_columns, series_id, series_key
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span, SpanLog
from airisd.plugin import PluginContext
from airisd.selfmetrics import Registry
from tests.servers import ServerProcess, chdb_server

NOW_S = int(time.time()) // 3600 * 3600 - 7200  # recent: inside the default 30-day TTL
T0 = NOW_S * 1_000_000_000
SEC = 1_000_000_000


# -- fixtures shared by the clickhouse test modules ------------------------------------------------
@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = chdb_server(tmp_path_factory.mktemp("chdb"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


def make_output(server: ServerProcess, database: str, **options: Any) -> ClickHouseOutput:
    cfg = msgspec.convert({"host": "127.0.0.1", "port": server.port, "database": database, **options},
                          ClickHouseConfig)
    cfg.validate()

    async def emit(batch: Batch) -> None:
        raise AssertionError("an output never emits")

    ctx = PluginContext(Path("/nonexistent"), logging.getLogger("test.clickhouse"), Registry(), emit)
    return ClickHouseOutput(cfg, ctx)


def raw_client(server: ServerProcess) -> Any:
    return clickhouse_connect.get_client(host="127.0.0.1", port=server.port, autogenerate_session_id=False,
                                         dedicated_pool=True)


async def started(server: ServerProcess, database: str, **options: Any) -> ClickHouseOutput:
    out = make_output(server, database, **options)
    await out.start()
    return out


# -- unit: config, ids, error mapping --------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"port": 0}, "port must be 1-65535, got 0"),
    ({"database": "air-is"}, "database must be a plain identifier"),
    ({"retention_days": -1}, "retention_days must be >= 0, got -1"),
    ({"host": ""}, "host must not be empty"),
])
def test_config_rejects_bad_values_quoting_them(options: dict[str, Any], message: str) -> None:
    cfg = msgspec.convert(options, ClickHouseConfig)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_config_rejects_unknown_option() -> None:
    with pytest.raises(msgspec.ValidationError, match="hostname"):
        msgspec.convert({"hostname": "x"}, ClickHouseConfig)


def test_series_id_is_stable_and_label_order_free() -> None:
    a = series_id(series_key("cpu", {"host": "a", "dc": "x"}))
    assert a == series_id(series_key("cpu", {"dc": "x", "host": "a"}))
    assert a != series_id(series_key("cpu", {"dc": "x", "host": "b"}))
    assert a == 9727424632551739472  # fixed across processes and releases (blake2b, not hash())


def test_a_repeated_sample_in_one_batch_keeps_the_last_value() -> None:
    cols = metric_columns([Point(name="m", value=1.0, ts=5), Point(name="m", value=2.0, ts=5),
                           Point(name="m", value=3.0, ts=6)], SeriesIds())
    assert cols[3] == [5, 6] and cols[4] == [2.0, 3.0]


def test_errors_map_to_transient_or_permanent() -> None:
    assert isinstance(classify(OperationalError("connection refused"), "insert"), TransientError)
    assert isinstance(classify(DatabaseError("boom", code=241, name="MEMORY_LIMIT_EXCEEDED"), "insert"),
                      TransientError)
    assert isinstance(classify(DatabaseError("bad", code=27, name="CANNOT_PARSE_INPUT"), "insert"), PermanentError)
    assert isinstance(classify(DatabaseError("auth", code=516, name="AUTHENTICATION_FAILED"), "x"), PermanentError)
    assert isinstance(classify(TypeError("not a float"), "insert"), PermanentError)


# -- schema and migrations ---------------------------------------------------------------------------
@pytest.mark.services
def test_schema_is_created_once_and_restart_applies_nothing(chdb: ServerProcess) -> None:
    async def main() -> None:
        first = await started(chdb, "schema_a", retention_days=7)
        await first.shutdown()
        second = await started(chdb, "schema_a", retention_days=7)
        await second.shutdown()
        assert first.applied == [m.version for m in MIGRATIONS]
        assert second.applied == []

    anyio.run(main)
    client = raw_client(chdb)
    try:
        tables = {r[0]: r[1] for r in client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = 'schema_a'").result_rows}
        assert set(tables) == {"metrics", "logs", "spans", "schema_version"}
        for t in ("metrics", "logs", "spans"):
            assert "PARTITION BY toYYYYMM(date)" in tables[t] and "toIntervalDay(7)" in tables[t], tables[t]
        assert tables["metrics"].startswith("ReplacingMergeTree") and "ORDER BY (name, series, timestamp)" in \
            tables["metrics"]
        types = dict(client.query("SELECT name, type FROM system.columns WHERE database = 'schema_a' "
                                  "AND table = 'metrics'").result_rows)
        assert types["name"] == "LowCardinality(String)" and types["labels"] == "Map(String, String)"
        assert types["date"] == "Date"
        versions = [r[0] for r in client.query("SELECT version FROM schema_a.schema_version FINAL "
                                               "ORDER BY version").result_rows]
        assert versions == [m.version for m in MIGRATIONS]
        indexes = {r[0] for r in client.query("SELECT table FROM system.data_skipping_indices "
                                              "WHERE database = 'schema_a'").result_rows}
        assert indexes == {"logs", "spans"}
    finally:
        client.close()


@pytest.mark.services
def test_adding_a_column_is_a_migration_and_retention_changes_the_ttl(chdb: ServerProcess) -> None:
    client = raw_client(chdb)
    try:
        assert migrate(client, "schema_b", 30) == [m.version for m in MIGRATIONS]
        extra = (*MIGRATIONS, Migration(99, "logs.host", ["ALTER TABLE {db}.logs ADD COLUMN IF NOT EXISTS host "
                                                           "LowCardinality(String) DEFAULT ''"]))
        assert migrate(client, "schema_b", 30, extra) == [99]
        assert migrate(client, "schema_b", 30, extra) == []
        cols = {r[0] for r in client.query("SELECT name FROM system.columns WHERE database = 'schema_b' "
                                           "AND table = 'logs'").result_rows}
        assert "host" in cols
        migrate(client, "schema_b", 90, extra)
        engine = client.command("SELECT engine_full FROM system.tables WHERE database = 'schema_b' AND name = 'spans'")
        assert "toIntervalDay(90)" in str(engine)
        migrate(client, "schema_b", 0, extra)
        engine = client.command("SELECT engine_full FROM system.tables WHERE database = 'schema_b' AND name = 'spans'")
        assert " TTL " not in str(engine)
    finally:
        client.close()


# -- round trips ----------------------------------------------------------------------------------------
@pytest.mark.services
def test_points_logs_and_spans_round_trip(chdb: ServerProcess) -> None:
    points = [Point(name="cpu", value=i * 0.5, ts=T0 + i * SEC, labels={"host": f"h{i % 3}", "dc": "eu"})
              for i in range(30)]
    logs = [LogRecord(ts=T0 + i, level="ERROR" if i % 2 else "INFO", message=f"line {i} ünïcode", service="api",
                      trace_id="ab" * 16, labels={"env": "prod"}, user_id="u1", request_id=f"r{i}",
                      attributes={"n": i, "s": "x", "nested": {"a": [1, 2]}}) for i in range(5)]
    spans = [Span(trace_id="cd" * 16, span_id=f"{i:016x}", parent_span_id="" if i == 0 else f"{0:016x}",
                  operation_name="GET /x", service_name="web", start_ts=T0 + i, end_ts=T0 + i + 1500, kind="server",
                  error=i == 1, tags={"http.status": 200 + i, "ok": True},
                  logs=[SpanLog(ts=T0 + i, message="evt", fields={"k": "v"})]) for i in range(3)]

    async def main() -> None:
        out = await started(chdb, "rt")
        try:
            await out.write(Batch(Signal.METRICS, points))
            await out.write(Batch(Signal.METRICS, points[:5]))  # re-sent: counted once
            await out.write(Batch(Signal.LOGS, logs))
            await out.write(Batch(Signal.TRACES, spans))
            store = out.query_api(Signal.METRICS)
            got, truncated = await anyio.to_thread.run_sync(store.query_points, "cpu", {}, T0, T0 + 60 * SEC, 1000)
            assert not truncated
            assert {(s.name, tuple(sorted(s.labels.items()))): pts for s, pts in got} == {
                ("cpu", (("dc", "eu"), ("host", f"h{h}"))): [(p.ts, p.value) for p in points if p.labels["host"] ==
                                                              f"h{h}"] for h in range(3)}
            assert await anyio.to_thread.run_sync(store.aggregate, "cpu", {"host": "h1"}, T0, T0 + 60 * SEC,
                                                  "count") == 10.0
            assert await anyio.to_thread.run_sync(store.count_points) == 30
        finally:
            await out.shutdown()

    anyio.run(main)
    client = raw_client(chdb)
    try:
        rows = client.query("SELECT toUnixTimestamp64Nano(timestamp), level, service, message, trace_id, labels, "
                            "user_id, request_id, attributes, date FROM rt.logs ORDER BY timestamp").result_rows
        assert [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows] == [
            (r.ts, r.level, r.service, r.message, r.trace_id, r.labels, r.user_id, r.request_id) for r in logs]
        assert rows[2][8] == {"n": "2", "s": "x", "nested": '{"a":[1,2]}'}
        assert str(rows[0][9]) == time.strftime("%Y-%m-%d", time.gmtime(NOW_S))
        srows = client.query("SELECT span_id, parent_span_id, duration_ns, error, tags, logs, "
                             "toUnixTimestamp64Nano(start_time) FROM rt.spans ORDER BY span_id").result_rows
        assert [(r[0], r[2], r[3], r[6]) for r in srows] == [(s.span_id, 1500, s.error, s.start_ts) for s in spans]
        assert srows[1][4] == {"http.status": "201", "ok": "true"}
        assert msgspec.json.decode(srows[0][5]) == [{"ts": T0, "message": "evt", "fields": {"k": "v"}}]
        # The seed's maintenance commands work on our layout as written.
        client.command("OPTIMIZE TABLE rt.metrics FINAL")
        client.command("ALTER TABLE rt.metrics DELETE WHERE date < today() - INTERVAL 30 DAY")
        assert client.command("SELECT count() FROM rt.metrics") == 30
    finally:
        client.close()


@pytest.mark.services
def test_a_value_clickhouse_refuses_is_a_permanent_error(chdb: ServerProcess) -> None:
    async def main() -> None:
        out = await started(chdb, "bad")
        try:
            with pytest.raises(PermanentError):  # not a float: nothing retrying can fix
                await out.write(Batch(Signal.METRICS, [Point(name="m", value="x", ts=T0)]))  # type: ignore[arg-type]
            await out.write(Batch(Signal.METRICS, [Point(name="m", value=1.0, ts=T0)]))  # the next batch goes in
        finally:
            await out.shutdown()

    anyio.run(main)


@pytest.mark.services
def test_a_stopped_server_is_a_transient_error_and_a_dropped_table_is_recreated(chdb: ServerProcess) -> None:
    async def main() -> None:
        out = await started(chdb, "gone")
        try:
            client = raw_client(chdb)
            try:
                client.command("DROP TABLE gone.metrics SYNC")
            finally:
                client.close()
            with pytest.raises(TransientError, match="migrating again"):
                await out.write(Batch(Signal.METRICS, [Point(name="m", value=1.0, ts=T0)]))
            await out.write(Batch(Signal.METRICS, [Point(name="m", value=1.0, ts=T0)]))  # the runner's retry
            store = out.query_api(Signal.METRICS)
            assert await anyio.to_thread.run_sync(store.aggregate, "m", {}, T0, T0, "sum") == 1.0
        finally:
            await out.shutdown()

    anyio.run(main)


@pytest.mark.services
def test_unreachable_server_is_transient_for_writes_and_queries(tmp_path: Path) -> None:
    from tests.e2e_helpers import free_port

    server = ServerProcess("none", [], free_port(), tmp_path)  # nothing listens on this port

    async def main() -> None:
        out = make_output(server, "x", connect_timeout_secs=1)
        try:
            await out.start()  # not fatal: the daemon starts, its buffer holds the data
            with pytest.raises(TransientError):
                await out.write(Batch(Signal.METRICS, [Point(name="m", value=1.0, ts=T0)]))
            store = out.query_api(Signal.METRICS)
            with pytest.raises(TransientError):
                await anyio.to_thread.run_sync(lambda: store.list_series(0, T0, name=None, offset=0, limit=10))
            assert (await out.check())["reachable"] is False
        finally:
            await out.shutdown()

    anyio.run(main)


def test_query_apis_answer_the_roles_protocols(tmp_path: Path) -> None:
    from airisd.query import LogQuery, MetricQuery, TraceQuery
    from tests.e2e_helpers import free_port

    out = make_output(ServerProcess("none", [], free_port(), tmp_path), "x")  # no connection made here
    assert isinstance(out.query_api(Signal.METRICS), MetricQuery)
    assert isinstance(out.query_api(Signal.LOGS), LogQuery)
    assert isinstance(out.query_api(Signal.TRACES), TraceQuery)
