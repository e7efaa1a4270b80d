"""Events/s the clickhouse output delivers, through its write() (column-oriented Native INSERTs),
at batch sizes 1k and 10k, median of 3 runs; prints markdown rows.

The server is our test fixture (tests/chdb_http_server.py): the ClickHouse 26.9 engine from chdb
behind ClickHouse's HTTP interface, one request at a time, in one Python process. A real
clickhouse-server would parse and merge in parallel; read these figures as the output's own cost
plus one engine, not as ClickHouse's ceiling. Run: PYTHONPATH=. python bench/backends/clickhouse.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio
import msgspec
from airisd_plugins.outputs.clickhouse import ClickHouseConfig, ClickHouseOutput

from airisd.model import Signal
from bench.backends.workload import deliver, logs, plugin_ctx, points, print_table, spread
from tests.servers import chdb_server, running


async def main(n: int, port: int) -> list[str]:
    cfg = msgspec.convert({"port": port, "database": "bench", "retention_days": 0}, ClickHouseConfig)

    out = ClickHouseOutput(cfg, plugin_ctx())
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
                            + spread(rates))
    finally:
        await out.shutdown()
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, running(chdb_server(Path(d))) as server:
        rows = anyio.run(main, args.n, server.port)
    print_table(rows)


if __name__ == "__main__":
    run()
