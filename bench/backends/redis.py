"""Events/s the redis output delivers, through its write(), with method = "pipeline" (one XADD per
record, pipelined per batch) and "script" (a Lua loop of XADDs per 1,000 records), at batch sizes
1k and 10k, median of 3 runs; prints markdown rows.

The server is redis-server (Debian 12's 7.0) on loopback, started by tests/servers.redis_server
with persistence off, as the tests start it; one client connection, as the output uses.
Run: PYTHONPATH=. python bench/backends/redis.py [-n 100000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and this file would be imported
# as redis-py itself: drop it before anything imports redis.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import anyio
import msgspec
from airisd_plugins.outputs.redis import RedisOutput, RedisOutputConfig

from airisd.model import Batch, LogRecord, Point, Signal
from airisd.plugin import PluginContext
from airisd.selfmetrics import Registry
from tests.servers import redis_server

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


async def deliver(out: RedisOutput, signal: Signal, items: list[Any], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        await out.write(Batch(signal, items[i:i + batch]))
    return len(items) / (time.perf_counter() - started)


async def main(n: int, port: int, fmt: str) -> list[str]:
    async def emit(batch: Batch) -> None:
        raise AssertionError

    rows = []
    for method in ("pipeline", "script"):
        cfg = msgspec.convert({"port": port, "format": fmt, "stream_prefix": "bench:", "method": method},
                              RedisOutputConfig)
        out = RedisOutput(cfg, PluginContext(Path("/nonexistent"), logging.getLogger("bench"), Registry(), emit))
        await out.start()
        admin: Any = out._client  # the output's own connection pool
        try:
            for signal, make in ((Signal.METRICS, points), (Signal.LOGS, logs)):
                for batch in (1_000, 10_000):
                    rates = []
                    for run in range(3):
                        items = make(n, run * 7 + batch)
                        rates.append(await deliver(out, signal, items, batch))
                        assert await admin.xlen(f"bench:{signal.value}") == n, "not every event arrived"
                        await admin.delete(f"bench:{signal.value}")
                    rows.append(f"| redis 7.0 ({method}, {fmt}) | {signal.value} | {batch:,} | {n:,} | "
                                f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |")
        finally:
            await out.shutdown()
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per run")
    ap.add_argument("--format", default="fields", choices=("fields", "json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = redis_server(Path(d))
        server.start()
        try:
            rows = anyio.run(main, args.n, server.port, args.format)
        finally:
            server.stop()
    print("| backend | signal | batch | events | events/s (median of 3) | range |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    run()
