"""Events/s the clickhouse output delivers, through its write() (column-oriented Native INSERTs),
at batch sizes 1k and 10k, median of 3 runs; prints markdown rows.

The server is our test fixture (tests/chdb_http_server.py): the ClickHouse 26.9 engine from chdb
behind ClickHouse's HTTP interface, one request at a time, in one Python process. A real
clickhouse-server would parse and merge in parallel; read these figures as the output's own cost
plus one engine, not as ClickHouse's ceiling. Run: PYTHONPATH=. python bench/backends/clickhouse.py
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import msgspec
from airisd_plugins.outputs.clickhouse import ClickHouseConfig, ClickHouseOutput

from airisd.model import Batch, LogRecord, Point, Signal
from airisd.plugin import PluginContext
from airisd.selfmetrics import Registry
from tests.servers import chdb_server

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")


def points(n: int, run: int) -> list[Point]:
    t0 = (int(time.time()) - 3600) * 1_000_000_000 + run
    return [Point(name=f"bench_{i % 20}", value=i * 0.25, ts=t0 + i * 1000,
                  labels={"host": f"h{i % 50}", "region": "eu", "run": str(run)}) for i in range(n)]


def logs(n: int, run: int) -> list[LogRecord]:
    t0 = (int(time.time()) - 3600) * 1_000_000_000 + run
    return [LogRecord(ts=t0 + i * 1000, level=LEVELS[i % 4], service=f"svc{i % 8}",
                      message=f"request {i} served in {i % 97} ms for user {i % 1000}", trace_id=f"{i:032x}",
                      labels={"env": "prod"}, attributes={"status": 200 + i % 5, "path": "/api/v1/items"})
            for i in range(n)]


async def deliver(out: ClickHouseOutput, signal: Signal, items: list, batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        await out.write(Batch(signal, items[i:i + batch]))
    return len(items) / (time.perf_counter() - started)


async def main(n: int, port: int) -> list[str]:
    cfg = msgspec.convert({"port": port, "database": "bench", "retention_days": 0}, ClickHouseConfig)

    async def emit(batch: Batch) -> None:
        raise AssertionError

    out = ClickHouseOutput(cfg, PluginContext(Path("/nonexistent"), logging.getLogger("bench"), Registry(), emit))
    await out.start()
    rows = []
    try:
        for signal, make in ((Signal.METRICS, points), (Signal.LOGS, logs)):
            for batch in (1_000, 10_000):
                rates = []
                for run in range(3):
                    items = make(n, run * 7 + batch)
                    rates.append(await deliver(out, signal, items, batch))
                rows.append(f"| clickhouse (chdb fixture) | {signal.value} | {batch:,} | {n:,} | "
                            f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |")
    finally:
        await out.shutdown()
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = chdb_server(Path(d))
        server.start()
        try:
            rows = anyio.run(main, args.n, server.port)
        finally:
            server.stop()
    print("| backend | signal | batch | events | events/s (median of 3) | range |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    run()
