"""Spans/s the jaeger output delivers through its write(), in batches of 1,000, median of 3 runs;
prints markdown rows.

No Jaeger can be had offline: the receiver is Arize Phoenix (a real OTLP/HTTP protobuf receiver) on
loopback, started by tests/servers.phoenix_server as the tests start it. Phoenix answers 200 once it
has parsed a request and queued its spans, then inserts them into its SQLite database in the
background (100 spans a transaction), so "delivered" here means "acknowledged by the receiver",
as a Jaeger collector's queue would acknowledge it; a 503 from Phoenix (queue at capacity) is
retried as the daemon's runner would, and counts against the rate. The OTLP encoding alone is
measured too, to show the output's own cost.
Run: PYTHONPATH=. python bench/backends/jaeger.py [-n 3000]   (without and with gzip)
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
from airisd_plugins.outputs.jaeger import JaegerOutput
from airisd_plugins.outputs.jaeger.config import JaegerConfig
from airisd_plugins.outputs.jaeger.otlp import encode_spans

from airisd.errors import TransientError
from airisd.model import Batch, Signal, Span, SpanLog
from airisd.plugin import PluginContext
from airisd.selfmetrics import Registry
from tests.servers import phoenix_server

BATCH = 1_000


def spans(n: int, run: int) -> list[Span]:
    """Traces of 5 spans over 4 services, with the tags and logs a web request typically has."""
    t0 = (int(time.time()) - 600) * 1_000_000_000
    out = []
    for i in range(n):
        trace = f"{run + 1:08x}{i // 5:024x}"
        out.append(Span(
            trace_id=trace, span_id=f"{run + 1:04x}{i:012x}",
            parent_span_id="" if i % 5 == 0 else f"{run + 1:04x}{i - i % 5:012x}",
            operation_name=("GET /api/orders", "SELECT orders", "cache get", "charge", "publish")[i % 5],
            service_name=("api-gateway", "order-db", "cache", "payments")[i % 4],
            start_ts=t0 + i * 1000, end_ts=t0 + i * 1000 + 250_000 * (1 + i % 7),
            kind=("server", "client", "client", "client", "producer")[i % 5], error=i % 50 == 0,
            tags={"http.method": "GET", "http.status_code": 500 if i % 50 == 0 else 200, "http.route": "/api/orders",
                  "db.rows": i % 13, "cache.hit": i % 3 == 0, "user.id": f"u{i % 1000}"},
            logs=[SpanLog(ts=t0 + i * 1000 + 1000, message="retry", fields={"attempt": 1})] if i % 10 == 0 else [],
        ))
    return out


async def deliver(out: JaegerOutput, items: list[Span]) -> tuple[float, int]:
    """(spans/s, requests retried) for one run."""
    retried = 0
    started = time.perf_counter()
    for i in range(0, len(items), BATCH):
        batch = Batch(Signal.TRACES, items[i:i + BATCH])
        while True:
            try:
                await out.write(batch)
                break
            except TransientError:
                retried += 1
                await anyio.sleep(0.1)
    return len(items) / (time.perf_counter() - started), retried


async def main(n: int, url: str) -> list[str]:
    return [await measure(n, url, compression) for compression in ("none", "gzip")]


async def measure(n: int, url: str, compression: str) -> str:
    async def emit(batch: Batch) -> None:
        raise AssertionError

    cfg = msgspec.convert({"endpoint": url, "compression": compression}, JaegerConfig)
    cfg.validate()
    out = JaegerOutput(cfg, PluginContext(Path("/nonexistent"), logging.getLogger("bench"), Registry(), emit))
    await out.start()
    rates, retries = [], 0
    try:
        for run in range(3):
            rate, retried = await deliver(out, spans(n, run))
            rates.append(rate)
            retries += retried
    finally:
        await out.shutdown()
    items = spans(BATCH, 9)
    started = time.perf_counter()
    for _ in range(10):
        encode_spans(items)
    encode_rate = 10 * BATCH / (time.perf_counter() - started)
    return (f"| Phoenix 20 (OTLP/HTTP, {compression}) | {BATCH:,} | {n:,} | {statistics.median(rates):,.0f} | "
            f"{min(rates):,.0f}-{max(rates):,.0f} | {retries} | {encode_rate:,.0f} |")


def run() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # Phoenix refuses more than 20,000 queued spans (503): 2 x 3 runs x 3,000 stay under it.
    ap.add_argument("-n", type=int, default=3_000, help="spans per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = phoenix_server(Path(d))
        server.start()
        try:
            rows = anyio.run(main, args.n, server.url)
        finally:
            server.stop()
    print("| receiver (jaeger output) | batch | spans | spans/s acknowledged (median of 3) | range | 503s retried "
          "| OTLP encoding alone, spans/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    run()
