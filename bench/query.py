"""Query latency over a big store: build it once (cached), then time GET /metrics/query.

The store is written with MetricStore itself (schema, series rows and their ids, exactly as the
daemon makes them); the bulk of the points then goes in with one ``executemany`` per series in a
few large transactions, in (series, time) order, which is what SQLite appends fastest. The file is
cached under bench/.cache/, keyed by its size and a hash of the schema, and each run works on a copy
(the daemon writes its WAL beside it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from airisd_plugins.outputs.sqlite.metrics_store import MetricStore
from procs import rss_mb
from servers import airisd_server, airisd_token

from airisd.model import Point
from airisd.timeparse import format_ts

STEP_NS = 10 * 1_000_000_000  # one point every 10 s per series
NAME = "bench_query"
NS_PER_S = 1_000_000_000


@dataclass
class QueryStore:
    path: Path  # directory holding metrics.db
    series: int
    per_series: int
    end_ns: int  # newest timestamp
    build_secs: float  # 0 when it came from the cache

    @property
    def points(self) -> int:
        return self.series * self.per_series


def labels_of(i: int) -> dict[str, str]:
    return {"host": f"host-{i % 50:02d}", "series": f"s{i:04d}"}


def build_store(cache: Path, *, series: int, per_series: int) -> QueryStore:
    key = hashlib.sha256(MetricStore.SCHEMA.encode()).hexdigest()[:10]
    d = cache / f"query-{series}x{per_series}-{key}"
    meta = d / "meta.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        return QueryStore(d, series, per_series, m["end_ns"], 0.0)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    started = time.perf_counter()
    end_ns = time.time_ns() // (60 * NS_PER_S) * (60 * NS_PER_S)
    first_ns = end_ns - (per_series - 1) * STEP_NS
    store = MetricStore(d)
    store.open()
    # Series rows through the daemon's own write path (one point each, at the first timestamp).
    store.write_batches([[Point(name=NAME, value=0.0, ts=first_ns, labels=labels_of(i))
                          for i in range(series)]])
    ids = [row[0] for row in store.wconn.execute("SELECT id FROM series ORDER BY id")]
    store.close()
    # The rest in bulk: WAL off while building (the daemon turns it back on when it opens the file).
    conn = sqlite3.connect(d / MetricStore.filename, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    per_tx = max(1, 1_000_000 // per_series)
    for start in range(0, len(ids), per_tx):
        conn.execute("BEGIN")
        for sid in ids[start:start + per_tx]:
            conn.executemany("INSERT INTO points(series_id, ts, value) VALUES (?, ?, ?)",
                             ((sid, first_ns + j * STEP_NS, float(j % 97)) for j in range(1, per_series)))
        conn.execute("COMMIT")
    count = conn.execute("SELECT count(*) FROM points").fetchone()[0]
    conn.execute("ANALYZE")
    conn.close()
    if count != series * per_series:
        raise RuntimeError(f"query store has {count} points, expected {series * per_series}")
    build = time.perf_counter() - started
    meta.write_text(json.dumps({"end_ns": end_ns, "series": series, "per_series": per_series,
                                "build_secs": build}))
    return QueryStore(d, series, per_series, end_ns, build)


@dataclass
class Latency:
    label: str
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    items: int  # buckets or points in one answer


def _time(client: httpx.Client, url: str, params: dict[str, str], *, warmup: int, n: int,
          count_key: str) -> tuple[list[float], int]:
    items = -1
    for _ in range(warmup):
        client.get(url, params=params).raise_for_status()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"query answered {r.status_code}: {r.text[:300]}")
        if items < 0:
            series = r.json()["data"]["series"]
            if len(series) != 1:
                raise RuntimeError(f"expected one series, got {len(series)}")
            items = len(series[0][count_key])
    return times, items


def _latency(label: str, times: list[float], items: int) -> Latency:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return Latency(label, len(ms), statistics.median(ms), p99, statistics.fmean(ms), items)


def measure(store: QueryStore, workdir: Path, *, n: int = 200,
            warmup: int = 20) -> tuple[list[Latency], float]:
    """p50/p99 of sequential queries (one keep-alive connection), and the daemon's RSS afterwards."""
    data = workdir / "airisd-query"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(store.path, data, ignore=shutil.ignore_patterns("meta.json"))
    server = airisd_server(data).start()
    try:
        token = airisd_token(server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        to_ns = store.end_ns
        from_ns = to_ns - 3600 * NS_PER_S
        one = {"name": NAME, "labels": f"series:s{store.series // 2:04d}", "from": format_ts(from_ns),
               "to": format_ts(to_ns)}
        url = f"{server.base_url}/metrics/query"
        out = []
        with httpx.Client(headers=headers, timeout=30) as client:
            times, items = _time(client, url, {**one, "interval": "1m"}, warmup=warmup, n=n,
                                 count_key="buckets")
            out.append(_latency("1 series, 1 h, interval=1m", times, items))
            times, items = _time(client, url, one, warmup=warmup, n=n, count_key="points")
            out.append(_latency("1 series, 1 h, raw points", times, items))
        rss = rss_mb(server.pid)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    return out, rss
