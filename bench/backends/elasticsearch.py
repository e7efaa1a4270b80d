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
import tempfile
import time

import anyio
import msgspec
from airisd_plugins.outputs.elasticsearch import ElasticsearchConfig, ElasticsearchOutput
from airisd_plugins.outputs.elasticsearch.writer import prepare

from airisd.model import Signal
from bench.backends.workload import deliver, logs, plugin_ctx, print_table, spread
from tests.servers import noida_elasticsearch, running


async def main(n: int, url: str, data_dir: Path) -> list[str]:
    rows = []
    for batch in (1_000, 5_000):
        rates = []
        for run in range(3):  # each run into indices of its own, so that runs are alike
            cfg = msgspec.convert({"hosts": [url], "index_prefix": f"bench-{batch}-{run}-", "number_of_replicas": 0,
                                   "template_name": f"bench-{batch}-{run}"}, ElasticsearchConfig)
            cfg.validate()
            out = ElasticsearchOutput(cfg, plugin_ctx(data_dir))
            await out.start()
            try:
                rates.append(await deliver(out, Signal.LOGS, logs(n, run * 7 + batch), batch))
            finally:
                await out.shutdown()
        rows.append(f"| elasticsearch (noida-db emulator) | logs | {batch:,} | {n:,} | "
                    + spread(rates))
    rates = []
    for run in range(3):  # the output's own cost: documents, ids and bulk lines, no server
        items = logs(n, run)
        started = time.perf_counter()
        prepare(items, prefix="bench-", date_format="%Y.%m.%d", content_ids=True)
        rates.append(n / (time.perf_counter() - started))
    rows.append(f"| elasticsearch (encoding only, no server) | logs | - | {n:,} | "
                + spread(rates))
    return rows


def run() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("-n", type=int, default=50_000, help="events per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, running(noida_elasticsearch(Path(d))) as server:
        rows = anyio.run(main, args.n, server.url, Path(d))
    print_table(rows)


if __name__ == "__main__":
    run()
