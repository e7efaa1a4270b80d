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
import tempfile
from typing import Any

import anyio
import msgspec
from airisd_plugins.outputs.redis import RedisOutput, RedisOutputConfig

from airisd.model import Signal
from bench.backends.workload import deliver, logs, plugin_ctx, points, print_table, spread
from tests.servers import redis_server, running


async def main(n: int, port: int, fmt: str) -> list[str]:
    rows = []
    for method in ("pipeline", "script"):
        cfg = msgspec.convert({"port": port, "format": fmt, "stream_prefix": "bench:", "method": method},
                              RedisOutputConfig)
        out = RedisOutput(cfg, plugin_ctx())
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
                                + spread(rates))
        finally:
            await out.shutdown()
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per run")
    ap.add_argument("--format", default="fields", choices=("fields", "json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, running(redis_server(Path(d))) as server:
        rows = anyio.run(main, args.n, server.port, args.format)
    print_table(rows)


if __name__ == "__main__":
    run()
