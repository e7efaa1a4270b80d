"""Events/s the kafka output delivers through its write() (acks=all, keyed by series, JSON values)
at batch sizes 1k and 10k with compression none and gzip, median of 3 runs; then the rate at which
the kafka input consumes them back into a no-op pipeline. Prints markdown rows.

The broker is tansu 0.6 (memory storage) on loopback, on the same 2 cores as the client: read the
figures as the output's own cost plus one broker. Run: PYTHONPATH=. python bench/backends/kafka.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio
import msgspec
from airisd_plugins.inputs.kafka import KafkaInput, KafkaInputConfig
from airisd_plugins.outputs.kafka import KafkaOutput, KafkaOutputConfig

from airisd.model import Batch, Signal
from bench.backends.workload import deliver, plugin_ctx, points, spread
from tests.servers import running, tansu_broker


async def consume(brokers: str, prefix: str, expected: int) -> float:
    """Seconds-to-rate for one consumer group reading a whole topic into an emit that only counts."""
    got = 0
    started_event, done = anyio.Event(), anyio.Event()

    async def emit(batch: Batch) -> None:
        nonlocal got
        got += len(batch)
        started_event.set()
        if got >= expected:
            done.set()

    cfg = msgspec.convert({"brokers": brokers, "topic_prefix": prefix, "group_id": f"bench-{prefix}",
                           "signals": ["metrics"], "poll_timeout_secs": 0.1}, KafkaInputConfig)
    inp = KafkaInput(cfg, plugin_ctx(emit=emit))
    async with anyio.create_task_group() as tg:
        await tg.start(inp.run)
        await started_event.wait()  # the group join (about 3 s on tansu) is not part of the rate
        started, first = time.perf_counter(), got
        await done.wait()
        rate = (got - first) / (time.perf_counter() - started)
        await inp.shutdown()
        tg.cancel_scope.cancel()
    return rate


async def main(n: int, port: int) -> list[str]:
    brokers = f"127.0.0.1:{port}"
    rows = []
    for compression in ("none", "gzip"):
        for batch in (1_000, 10_000):
            prefix = f"bench-{compression}-{batch}-"
            cfg = msgspec.convert({"brokers": brokers, "compression": compression, "topic_prefix": prefix},
                                  KafkaOutputConfig)
            out = KafkaOutput(cfg, plugin_ctx())
            await out.start()
            try:
                rates = [await deliver(out, Signal.METRICS, points(n, run), batch) for run in range(3)]
            finally:
                await out.shutdown()
            rows.append(f"| kafka (tansu) | produce, {compression} | {batch:,} | {n:,} | "
                        + spread(rates))
            if batch == 10_000:
                rate = await consume(brokers, prefix, 3 * n)
                rows.append(f"| kafka (tansu) | consume, {compression} | - | {3 * n:,} | {rate:,.0f} | one run |")
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, running(tansu_broker(Path(d))) as server:
        rows = anyio.run(main, args.n, server.port)
    print("| backend | what | batch | events | events/s (median of 3) | range |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    run()
