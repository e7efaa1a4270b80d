"""Events/s the elasticsearch output delivers, through its write() (NDJSON bulk requests of
``create`` actions with content ids), at batch sizes 1k and 5k, median of 3 runs; prints markdown
rows.

The server is noida-db's Elasticsearch API, an emulator of Elasticsearch 8.15, not Elasticsearch
(no real Elasticsearch can be had offline here): read the figures as the output's own cost plus
one emulator process, not as Elasticsearch's ceiling. Run: PYTHONPATH=. python bench/backends/elasticsearch.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file would shadow the
# elasticsearch package it benchmarks.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import logging
import statistics
import tempfile
import time

import anyio
import msgspec
from airisd_plugins.outputs.elasticsearch import ElasticsearchConfig, ElasticsearchOutput
from airisd_plugins.outputs.elasticsearch.writer import prepare

from airisd.model import Batch, LogRecord, Signal
from airisd.plugin import PluginContext
from airisd.selfmetrics import Registry
from tests.servers import noida_elasticsearch

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")


def logs(n: int, run: int) -> list[LogRecord]:
    t0 = (int(time.time()) - 3600) * 1_000_000_000 + run
    return [LogRecord(ts=t0 + i * 1000, level=LEVELS[i % 4], service=f"svc{i % 8}",
                      message=f"request {i} served in {i % 97} ms for user {i % 1000}", trace_id=f"{i:032x}",
                      labels={"env": "prod"}, attributes={"status": 200 + i % 5, "path": "/api/v1/items"})
            for i in range(n)]


async def deliver(out: ElasticsearchOutput, items: list[LogRecord], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        await out.write(Batch(Signal.LOGS, items[i:i + batch]))
    return len(items) / (time.perf_counter() - started)


async def main(n: int, url: str, data_dir: Path) -> list[str]:
    async def emit(batch: Batch) -> None:
        raise AssertionError

    rows = []
    for batch in (1_000, 5_000):
        rates = []
        for run in range(3):  # each run into indices of its own, so that runs are alike
            cfg = msgspec.convert({"hosts": [url], "index_prefix": f"bench-{batch}-{run}-", "number_of_replicas": 0,
                                   "template_name": f"bench-{batch}-{run}"}, ElasticsearchConfig)
            cfg.validate()
            out = ElasticsearchOutput(cfg, PluginContext(data_dir, logging.getLogger("bench"), Registry(), emit))
            await out.start()
            try:
                rates.append(await deliver(out, logs(n, run * 7 + batch), batch))
            finally:
                await out.shutdown()
        rows.append(f"| elasticsearch (noida-db emulator) | logs | {batch:,} | {n:,} | "
                    f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |")
    rates = []
    for run in range(3):  # the output's own cost: documents, ids and bulk lines, no server
        items = logs(n, run)
        started = time.perf_counter()
        prepare(items, prefix="bench-", date_format="%Y.%m.%d", content_ids=True)
        rates.append(n / (time.perf_counter() - started))
    rows.append(f"| elasticsearch (encoding only, no server) | logs | - | {n:,} | "
                f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |")
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("-n", type=int, default=50_000, help="events per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = noida_elasticsearch(Path(d))
        server.start()
        try:
            rows = anyio.run(main, args.n, server.url, Path(d))
        finally:
            server.stop()
    print("| backend | signal | batch | events | events/s (median of 3) | range |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    run()
