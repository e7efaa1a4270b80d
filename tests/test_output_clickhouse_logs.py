"""Log search on ClickHouse: for random records and random queries (the SQLite log store's own
strategies), search, count and page answer exactly what a brute-force filter with
logquery.matches answers, newest first: the query language translated to ClickHouse SQL keeps its
semantics. Against the real engine (chdb) over a socket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from airisd_plugins.outputs.clickhouse import ClickHouseOutput
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airisd.logquery import Match, Node, matches, parse
from airisd.model import Batch, LogRecord, Signal
from tests.servers import ServerProcess
from tests.test_logs_store import ALL, instants, newest_first, queries, record_sets, stored
from tests.test_output_clickhouse import chdb, make_output, raw_client  # noqa: F401 - chdb is a fixture

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def shared(chdb: ServerProcess) -> Iterator[tuple[ServerProcess, ClickHouseOutput, Any]]:  # noqa: F811
    """One migrated database for every example, emptied before each. Its insert deduplication is
    off: hypothesis replays examples, and a replayed identical block would be dropped."""
    out = make_output(chdb, "logs_oracle", retention_days=0)
    anyio.run(out.start)
    client = raw_client(chdb)
    client.command("ALTER TABLE logs_oracle.logs MODIFY SETTING non_replicated_deduplication_window = 0")
    try:
        yield chdb, out, client
    finally:
        client.close()
        anyio.run(out.shutdown)


def load(server: ServerProcess, recs: list[LogRecord]) -> tuple[ClickHouseOutput, str]:
    database = f"logs_{uuid.uuid4().hex[:10]}"  # a fresh database: no example sees another's rows
    out = make_output(server, database, retention_days=0)

    async def main() -> None:
        await out.start()
        if recs:
            await out.write(Batch(Signal.LOGS, recs[: len(recs) // 2]))
            await out.write(Batch(Signal.LOGS, recs[len(recs) // 2:]))

    anyio.run(main)
    return out, database


def drop(server: ServerProcess, out: ClickHouseOutput, database: str) -> None:
    anyio.run(out.shutdown)
    client = raw_client(server)
    try:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    finally:
        client.close()


@given(
    recs=record_sets(),
    query=st.one_of(st.none(), queries),
    level=st.sampled_from([None, None, "ERROR", "error", "warning", "Unknown"]),
    service=st.sampled_from([None, None, "user-api", "äpi"]),
    window=st.tuples(instants, instants | st.just(ALL[1])),
    limit=st.integers(1, 30),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_search_count_and_page_equal_the_brute_force_filter(
    shared: tuple[ServerProcess, ClickHouseOutput, Any], recs: list[LogRecord], query: Node | None,
    level: str | None, service: str | None, window: tuple[int, int], limit: int,
) -> None:
    lo, hi = window
    _, out, client = shared
    client.command("TRUNCATE TABLE logs_oracle.logs")
    for part in (recs[: len(recs) // 2], recs[len(recs) // 2:]):
        if part:
            anyio.run(out.write, Batch(Signal.LOGS, part))
    store = out.query_api(Signal.LOGS)
    assert store is not None
    got = store.search(query, level=level, service=service, from_ns=lo, to_ns=hi, limit=limit)
    filters: list[Node] = [] if query is None else [query]
    if level:
        filters.append(Match("level", level))
    if service:
        filters.append(Match("service", service))
    expected = [r for r in newest_first(recs) if lo <= r.ts <= hi and all(matches(f, r) for f in filters)]
    assert got == [stored(r) for r in expected[:limit]]
    assert store.count(query, lo, hi) == sum(
        1 for r in recs if lo <= r.ts <= hi and (query is None or matches(query, r)))
    kept = [r for r in newest_first(recs) if lo <= r.ts <= hi
            and all(matches(f, r) for f in filters[1 if query is not None else 0:])]
    assert store.page(page=1, size=5, level=level, service=service, from_ns=lo, to_ns=hi) == (
        len(kept), [stored(r) for r in kept[:5]])
    asc = list(reversed(kept))
    assert store.page(page=2, size=3, sort_desc=False, level=level, service=service, from_ns=lo, to_ns=hi) == (
        len(kept), [stored(r) for r in asc[3:6]])


def test_seed_queries(chdb: ServerProcess) -> None:  # noqa: F811
    seed = LogRecord(ts=1_705_314_600_000_000_000, level="ERROR", message="Database connection failed",
                     service="user-api", trace_id="abc123", user_id="user_12345", request_id="req_67890",
                     stack_trace="at db.connect(Db.java:42)", labels={"component": "database"},
                     attributes={"http.status": 500, "region": "KR-Seoul", "retry": True})
    other = LogRecord(ts=seed.ts + 1, level="INFO", message="user logged in", service="auth")
    out, database = load(chdb, [seed, other])
    try:
        store = out.query_api(Signal.LOGS)
        assert store is not None
        for q, hits in [("database AND error", [seed]), ('"connection failed"', [seed]), ('"failed connection"', []),
                        ("data*", [seed]), ("level:warning OR service:AUTH", [other]), ("db.connect", [seed]),
                        ("labels.component:DATABASE", [seed]), ("http.status:500.0", [seed]), ("retry:true", [seed]),
                        ("region:kr-*", [seed]), ("NOT region:x", [other, seed]), ("req_67890", [seed]),
                        ("-user", [seed]), ("logged user", [other])]:
            got = store.search(parse(q), from_ns=0, to_ns=ALL[1], limit=10)
            assert got == sorted(hits, key=lambda r: -r.ts), q
    finally:
        drop(chdb, out, database)
