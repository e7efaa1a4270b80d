"""Logs and traces figures (issues 3 and 4): ingest rate with wrk, query latency over big stores.

Ingest: ``POST /logs/batch`` (1000 records a request) and OTLP protobuf ``POST /v1/traces``
(512 spans a request), wrk -t2 -c4, stored rows counted in the daemon's own files afterwards.
Query: sequential httpx requests (one keep-alive connection) over a 5M-line log store and a
10M-span trace store. Both stores are built once with the daemon's own store classes
(LogStore/TraceStore.write_batches, so schema, FTS rows and counters are exactly the daemon's) and
cached under bench/.cache/; each run serves a copy (the daemon writes its WAL beside it).

    .venv/bin/python bench/logs_traces.py [--quick] [--build-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pyspy
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from airisd_plugins.outputs.sqlite.traces_store import TraceStore
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from procs import Server, free_port
from servers import AIRISD, ROOT, airisd_token
from wrkrun import WrkResult, run_wrk

from airisd.model import LogRecord, Span
from airisd.timeparse import format_ts

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
NS_PER_S = 1_000_000_000
SERVICES = [f"svc-{i}" for i in range(20)]
LEVELS = ["INFO"] * 70 + ["DEBUG"] * 12 + ["WARN"] * 10 + ["ERROR"] * 7 + ["FATAL"]
TABLES = ["orders", "users", "payments", "sessions", "inventory", "audit"]
# (weight %, template). 3% name both "database" and "error"; others name at most one of them.
MESSAGES = [
    (3, "database error: query on {t} failed after {n} ms (deadlock detected)"),
    (5, "database pool stats: {n} active connections on {t}"),
    (4, "upstream error from payment gateway: HTTP 502 after {n} ms"),
    (30, "GET /api/v1/{t}/{n} 200 {n} ms"),
    (20, "user {n} logged in from 10.0.{n}.7"),
    (18, "cache miss for {t}:{n}, loading from origin"),
    (20, "job {t}-sync finished: {n} rows processed"),
]
_MSG_POOL = [tpl for w, tpl in MESSAGES for _ in range(w)]


# -- cached stores -------------------------------------------------------------------------------
@dataclass
class BigStore:
    path: Path  # directory holding logs.db or traces.db
    rows: int
    first_ns: int
    end_ns: int
    build_secs: float  # 0 when it came from the cache
    complete: bool  # False when the build budget ran out before the target size
    extra: dict[str, list[str]]


def _key(schema: str) -> str:
    return hashlib.sha256(schema.encode()).hexdigest()[:10]


def _cached(d: Path) -> BigStore | None:
    meta = d / "meta.json"
    if not meta.exists():
        return None
    m = json.loads(meta.read_text())
    return BigStore(d, m["rows"], m["first_ns"], m["end_ns"], 0.0, m["complete"], m.get("extra", {}))


def _log_batches(rows: int, first_ns: int, step_ns: int, rng: random.Random) -> Iterator[list[LogRecord]]:
    batch: list[LogRecord] = []
    for i in range(rows):
        tpl = rng.choice(_MSG_POOL)
        msg = tpl.format(t=rng.choice(TABLES), n=rng.randrange(1, 5000))
        level = rng.choice(LEVELS)
        batch.append(LogRecord(ts=first_ns + i * step_ns, level=level, service=SERVICES[i % len(SERVICES)],
                               message=msg, request_id=f"req-{i:x}",
                               labels={"env": "prod", "host": f"host-{i % 8}"}))
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build_log_store(rows: int, *, budget_s: float) -> BigStore:
    """rows log lines over the last 24 h, 10k-row transactions through LogStore.write_batches."""
    d = CACHE / f"logs-{rows}-{_key(LogStore.SCHEMA)}"
    got = _cached(d)
    if got:
        return got
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    started = time.perf_counter()
    end_ns = time.time_ns() // (60 * NS_PER_S) * (60 * NS_PER_S)
    step = 86_400 * NS_PER_S // rows
    first_ns = end_ns - rows * step
    store = LogStore(d, synchronous="OFF")
    store.open()
    written = 0
    complete = True
    for batch in _log_batches(rows, first_ns, step, random.Random(42)):
        store.write_batches([batch])
        written += len(batch)
        if time.perf_counter() - started > budget_s:
            complete = written >= rows
            break
    store.wconn.execute("ANALYZE")
    n = store.count_all()
    store.close()
    build = time.perf_counter() - started
    last = first_ns + (written - 1) * step
    (d / "meta.json").write_text(json.dumps({"rows": n, "first_ns": first_ns, "end_ns": last,
                                             "complete": complete, "build_secs": build}))
    return BigStore(d, n, first_ns, last, build, complete, {})


TRACE_SERVICES = [f"svc-{i}" for i in range(10)]
OPS = ["GET /api/orders", "POST /api/pay", "db.query", "cache.get", "auth.check", "render"]


def _durations_ns(rng: random.Random) -> int:
    """Mostly fast, a tail past 500 ms (about 2%)."""
    r = rng.random()
    if r < 0.02:
        return rng.randrange(500, 5000) * 1_000_000
    if r < 0.10:
        return rng.randrange(100, 500) * 1_000_000
    return rng.randrange(1, 100) * 1_000_000


def _trace_batches(rows: int, first_ns: int, step_ns: int, rng: random.Random,
                   sample: list[str]) -> Iterator[list[Span]]:
    batch: list[Span] = []
    i = 0
    while i < rows:
        tid = rng.randbytes(16).hex()
        if len(sample) < 1000 and rng.random() < 0.01:
            sample.append(tid)
        root = rng.randbytes(8).hex()
        start = first_ns + i * step_ns
        svc = TRACE_SERVICES[(i // 8) % len(TRACE_SERVICES)]
        for k in range(8):  # eight spans a trace: a root and seven children
            dur = _durations_ns(rng)
            batch.append(Span(trace_id=tid, span_id=root if k == 0 else rng.randbytes(8).hex(),
                              parent_span_id="" if k == 0 else root, operation_name=OPS[k % len(OPS)],
                              service_name=svc if k == 0 else TRACE_SERVICES[rng.randrange(10)],
                              start_ts=start + k * 1000, end_ts=start + k * 1000 + dur,
                              kind="server" if k == 0 else "client", error=rng.random() < 0.01,
                              tags={"http.status_code": 200, "env": "prod"}))
            i += 1
        if len(batch) >= 100_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build_trace_store(rows: int, *, budget_s: float) -> BigStore:
    """rows spans (8 a trace) over the last 24 h, 100k-span transactions through
    TraceStore.write_batches; stops early (and says so) when budget_s runs out."""
    d = CACHE / f"traces-{rows}-{_key(TraceStore.SCHEMA)}"
    got = _cached(d)
    if got:
        return got
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    started = time.perf_counter()
    end_ns = time.time_ns() // (60 * NS_PER_S) * (60 * NS_PER_S)
    step = 86_400 * NS_PER_S // rows
    first_ns = end_ns - rows * step
    store = TraceStore(d, synchronous="OFF")
    store.open()
    sample: list[str] = []
    written = 0
    complete = True
    for batch in _trace_batches(rows, first_ns, step, random.Random(7), sample):
        store.write_batches([batch])
        written += len(batch)
        if time.perf_counter() - started > budget_s:
            complete = written >= rows
            break
    store.wconn.execute("ANALYZE")
    n = int(store.wconn.execute("SELECT count(*) FROM spans").fetchone()[0])
    store.close()
    build = time.perf_counter() - started
    last = first_ns + written * step
    extra = {"trace_ids": sample}
    (d / "meta.json").write_text(json.dumps({"rows": n, "first_ns": first_ns, "end_ns": last,
                                             "complete": complete, "build_secs": build, "extra": extra}))
    return BigStore(d, n, first_ns, last, build, complete, extra)


# -- servers -------------------------------------------------------------------------------------
def role_server(data_dir: Path, role: str) -> Server:
    """``airisd run --role log|trace`` on a loopback port: auth on, rate limit and retention off
    (as bench/servers.py does for the metrics role)."""
    port = free_port()
    password = "bench-" + os.urandom(8).hex()
    cmd = [str(AIRISD), "run", "--config", str(ROOT / "etc" / "airisd.toml"), "--role", role,
           "--data-dir", str(data_dir), "--set", f'listeners.{role}.address="127.0.0.1:{port}"',
           "--set", "outputs.sqlite.retention_days=0", "--set", "auth.rate_limit_per_minute=0"]
    return Server("airisd", cmd, f"http://127.0.0.1:{port}/health", data_dir.parent / f"{data_dir.name}.log",
                  env={"AIRISD_ADMIN_PASSWORD": password}, base_url=f"http://127.0.0.1:{port}",
                  password=password)


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- ingest --------------------------------------------------------------------------------------
@dataclass
class IngestRun:
    what: str
    sent: int  # items in 2xx answers
    stored: int
    secs: float
    not_ok: int
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float
    other_cpu_pct: float
    load1: float
    statuses: dict[str, int]
    profile: list[str]  # hottest frames, when profiled

    @property
    def per_sec(self) -> float:
        return self.stored / self.secs


def otlp_bodies(out: Path, *, count: int, spans: int) -> Path:
    """count ExportTraceServiceRequest bodies of spans spans each (8 a trace, unique ids across
    bodies), two resources (services) a body. Each body's spans start 20 ms after the previous
    body's, as an application's would: with every body starting at the same instant, each request
    inserted its spans all over the time-ordered indexes instead of at their end (~5x the pages
    written per commit), which no real sender causes. A run sends fewer requests than count."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    now = time.time_ns() - count * 20_000_000
    for b in range(count):
        req = ExportTraceServiceRequest()
        for r in range(2):
            rs = req.resource_spans.add()
            attr = rs.resource.attributes.add()
            attr.key, attr.value.string_value = "service.name", f"svc-{(b + r) % 10}"
            ss = rs.scope_spans.add()
            ss.scope.name = "bench"
            for t in range(spans // 16):
                tid = rng.randbytes(16)
                root = rng.randbytes(8)
                for k in range(8):
                    sp = ss.spans.add()
                    sp.trace_id = tid
                    sp.span_id = root if k == 0 else rng.randbytes(8)
                    if k:
                        sp.parent_span_id = root
                    sp.name = OPS[k % len(OPS)]
                    sp.kind = 2 if k == 0 else 3
                    sp.start_time_unix_nano = now + b * 20_000_000 + t * 1000 + k
                    sp.end_time_unix_nano = sp.start_time_unix_nano + _durations_ns(rng)
                    a = sp.attributes.add()
                    a.key, a.value.int_value = "http.status_code", 200
        (out / f"body-{b}.pb").write_bytes(req.SerializeToString())
    return out


def hot_frames(raw: Path, *, top: int = 10) -> list[str]:
    """From a py-spy raw profile: the share of samples whose stack passes through each airisd or
    plugin function (inclusive), and through each leaf function (self), the biggest first."""
    incl: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]
        if not frames or frames[-1].startswith(pyspy._IDLE_LEAVES):
            continue
        n = int(count)
        total += n
        leaf[frames[-1]] += n
        for f in {f for f in frames if any(m in f for m in ("airisd/", "plugins/"))}:
            incl[f] += n
    if not total:
        return []
    return ([f"incl {100 * n / total:4.1f}% {f}" for f, n in incl.most_common(top)]
            + [f"self {100 * n / total:4.1f}% {f}" for f, n in leaf.most_common(top)])


def ingest_run(kind: str, workdir: Path, *, secs: int, tag: str, profile: bool = False) -> IngestRun:
    """One wrk -t2 -c4 run against a fresh data dir; stored rows counted after a clean stop."""
    data = workdir / f"airisd-{kind}-{tag}"
    shutil.rmtree(data, ignore_errors=True)
    server = role_server(data, "log" if kind == "logs" else "trace").start()
    try:
        token = airisd_token(server) or "-"
        if kind == "logs":
            per = 1000
            base_ms = time.time_ns() // 1_000_000 - 6 * 3600 * 1000
            args = [str(per), str(base_ms), token]
            script = "logs.lua"
        else:
            per, nbodies = 512, max(48, 100 * secs)  # ~70 requests/s: no body is sent twice
            bodies = otlp_bodies(workdir / "otlp-bodies", count=nbodies, spans=per)
            args = [str(bodies), str(nbodies), token]
            script = "otlp.lua"
        spy = raw = None
        if profile:
            raw = workdir / f"profile-{kind}.txt"
            raw.unlink(missing_ok=True)
            spy = pyspy.record(server.pid, raw, secs=max(1, secs - 2))
        res: WrkResult = run_wrk(server.base_url, script, args, server_pid=server.pid, threads=2,
                                 connections=4, duration_secs=secs, latency=True)
        load1 = loadavg()
        hot = []
        if spy is not None and raw is not None:
            pyspy.wait_recorded(spy, raw, timeout_secs=30)
            hot = hot_frames(raw)
        server.check_alive()
    finally:
        rc = server.stop(timeout=60)
    if rc not in (0, None):
        raise RuntimeError(f"airisd exited with {rc}; see {data}.log")
    stored = _count(data / "logs.db", "logs") if kind == "logs" else _count(data / "traces.db", "spans")
    out = IngestRun(kind, res.ok * per, stored, res.duration_secs, res.not_ok, res.latency_ms("p50"),
                    res.latency_ms("p99"), res.server_cpu_pct, res.other_cpu_pct, load1,
                    {str(k): int(v) for k, v in res.raw["statuses"].items()}, hot)
    shutil.rmtree(data, ignore_errors=True)
    return out


# -- queries -------------------------------------------------------------------------------------
@dataclass
class Latency:
    label: str
    n: int
    p50_ms: float
    p99_ms: float
    items: int  # in the first answer
    load1: float


def _timed(client: httpx.Client, label: str, urls: list[tuple[str, dict[str, str]]], *, n: int,
           warmup: int, key: str) -> Latency:
    """n sequential GETs, cycling over urls; each answer must be a 200 with items under key."""
    for i in range(warmup):
        url, params = urls[i % len(urls)]
        client.get(url, params=params).raise_for_status()
    times: list[float] = []
    items = -1
    for i in range(n):
        url, params = urls[i % len(urls)]
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"{label}: {r.status_code} {r.text[:300]}")
        if items < 0:
            data = r.json()["data"]
            items = len(data[key]) if key in data else -1
    ms = sorted(t * 1000 for t in times)
    return Latency(label, n, statistics.median(ms), ms[min(n - 1, round(0.99 * (n - 1)))], items, loadavg())


def _serve_copy(store: BigStore, workdir: Path, name: str, role: str) -> tuple[Server, dict[str, str]]:
    data = workdir / name
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(store.path, data, ignore=shutil.ignore_patterns("meta.json"))
    server = role_server(data, role).start(timeout=120)
    token = airisd_token(server)
    return server, ({"Authorization": f"Bearer {token}"} if token else {})


def log_queries(store: BigStore, workdir: Path, *, n: int) -> list[Latency]:
    server, headers = _serve_copy(store, workdir, "airisd-logq", "log")
    try:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as c:
            hour = 3600 * NS_PER_S
            search = [("/logs/search", {"q": "database AND error"})]
            pages = [("/logs", {"level": "ERROR", "service": f"svc-{3 + 20 * 0}",
                                "from": format_ts(store.end_ns - (h + 1) * hour),
                                "to": format_ts(store.end_ns - h * hour), "size": "50"})
                     for h in range(0, 20, 2)]
            # A rarer pair over the whole day, and deep pages: the count tables must keep them cheap.
            day = {"from": format_ts(store.end_ns - 24 * hour), "to": format_ts(store.end_ns), "size": "50"}
            rare = [("/logs", {**day, "level": "FATAL", "service": f"svc-{i}", "page": "3"}) for i in range(0, 20, 2)]
            deep = [("/logs", {**day, "level": "ERROR", "service": f"svc-{i}", "page": str(40 + 10 * i)})
                    for i in range(0, 20, 2)]  # fmt: skip
            return [_timed(c, "GET /logs/search?q=database AND error", search, n=n, warmup=5, key="items"),
                    _timed(c, "GET /logs?level=ERROR&service=svc-3&from&to (1 h)&size=50", pages, n=n,
                           warmup=5, key="items"),
                    _timed(c, "GET /logs?level=FATAL&service=svc-N (24 h)&page=3&size=50", rare, n=n,
                           warmup=5, key="items"),
                    _timed(c, "GET /logs?level=ERROR&service=svc-N (24 h)&page=40..220&size=50", deep, n=n,
                           warmup=5, key="items")]
    finally:
        server.stop(timeout=60)
        shutil.rmtree(workdir / "airisd-logq", ignore_errors=True)


def trace_queries(store: BigStore, workdir: Path, *, n: int) -> list[Latency]:
    server, headers = _serve_copy(store, workdir, "airisd-traceq", "trace")
    try:
        ids = store.extra.get("trace_ids", [])
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as c:
            gets: list[tuple[str, dict[str, str]]] = [(f"/traces/{t}", {}) for t in ids[:n]]
            search = [("/traces/search", {"service": f"svc-{i}", "min_duration": "500ms"}) for i in range(10)]
            return [_timed(c, "GET /traces/{id}", gets, n=n, warmup=5, key="spans"),
                    _timed(c, "GET /traces/search?service=X&min_duration=500ms", search, n=n, warmup=5,
                           key="traces")]
    finally:
        server.stop(timeout=60)
        shutil.rmtree(workdir / "airisd-traceq", ignore_errors=True)


# -- report --------------------------------------------------------------------------------------
def run(quick: bool, log_rows: int, span_rows: int, budget: float) -> None:
    workdir = CACHE / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    secs, runs, n = (3, 1, 20) if quick else (10, 3, 150)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def log(msg: str) -> None:
        print(f"[logs_traces] {msg}", flush=True)

    log(f"{started}, nproc {os.cpu_count()}, load {loadavg():.2f}")
    ingest: dict[str, list[IngestRun]] = {"logs": [], "traces": []}
    profiled: dict[str, IngestRun] = {}
    for kind in ("logs", "traces"):
        # The measured runs, then one more with py-spy attached for the profile alone: py-spy
        # stops the process at every sample, which cost a profiled run 6-22% of its rate, so its
        # figure is reported apart and never enters the median.
        for i in range(runs + (0 if quick else 1)):
            profile = i == runs
            r = ingest_run(kind, workdir, secs=secs, tag=str(i), profile=profile)
            if profile:
                profiled[kind] = r
            else:
                ingest[kind].append(r)
            what = "profiled run (not in the median)" if profile else f"ingest run {i + 1}"
            log(f"{kind} {what}: {r.per_sec:,.0f}/s stored ({r.stored:,} of {r.sent:,} sent, "
                f"statuses {r.statuses}, p50 {r.p50_ms:.1f} ms, server CPU {r.server_cpu_pct:.0f}%, "
                f"other {r.other_cpu_pct:.0f}%, load {r.load1:.2f})")
            for h in r.profile:
                log(f"  {h}")
    logs_store = build_log_store(log_rows, budget_s=budget)
    log(f"log store: {logs_store.rows:,} lines{'' if logs_store.complete else ' (INCOMPLETE)'}")
    lat = log_queries(logs_store, workdir, n=n)
    traces_store = build_trace_store(span_rows, budget_s=budget)
    log(f"trace store: {traces_store.rows:,} spans{'' if traces_store.complete else ' (INCOMPLETE)'}")
    lat += trace_queries(traces_store, workdir, n=n)
    for q in lat:
        log(f"{q.label}: p50 {q.p50_ms:.1f} ms, p99 {q.p99_ms:.1f} ms ({q.n} requests, {q.items} items, "
            f"load {q.load1:.2f})")
    med = {k: statistics.median(r.per_sec for r in v) for k, v in ingest.items()}
    result = {"started": started, "nproc": os.cpu_count(), "quick": quick,
              "ingest": {k: [asdict(r) | {"per_sec": r.per_sec} for r in v] for k, v in ingest.items()},
              "ingest_median_per_sec": med,
              "profiled": {k: asdict(r) | {"per_sec": r.per_sec} for k, r in profiled.items()},
              "log_store_rows": logs_store.rows,
              "span_store_rows": traces_store.rows, "latency": [asdict(q) for q in lat]}
    out = CACHE / "results" / f"logs-traces-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    p50 = {q.label.split("?")[0] + ("?" + q.label.split("?")[1].split("=")[0] if "?" in q.label else ""): q.p50_ms
           for q in reversed(lat)}  # the first query of each path and first parameter: the issues' figures
    targets = [("logs/batch records/s", med["logs"], 50_000, True),
               ("/v1/traces spans/s", med["traces"], 40_000, True),
               ("logs search p50 ms", p50["GET /logs/search?q"], 100, False),
               ("logs page p50 ms", p50["GET /logs?level"], 50, False),
               ("trace get p50 ms", p50["GET /traces/{id}"], 5, False),
               ("trace search p50 ms", p50["GET /traces/search?service"], 100, False)]
    for name, v, target, higher in targets:
        met = v >= target if higher else v < target
        log(f"{name}: {v:,.1f} (target {'>=' if higher else '<'} {target:,}): {'met' if met else 'MISSED'}")
    log(f"saved {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small stores, short runs (a smoke test)")
    ap.add_argument("--build-only", choices=["logs", "traces"], help="only build (cache) one store")
    ap.add_argument("--build-budget", type=float, default=1200.0, help="seconds a store build may take")
    args = ap.parse_args()
    log_rows, span_rows = (50_000, 100_000) if args.quick else (5_000_000, 10_000_000)
    if args.build_only == "logs":
        b = build_log_store(log_rows, budget_s=args.build_budget)
        print(f"{b.path}: {b.rows:,} log lines, complete={b.complete}, built in {b.build_secs:.0f} s")
        return
    if args.build_only == "traces":
        b = build_trace_store(span_rows, budget_s=args.build_budget)
        print(f"{b.path}: {b.rows:,} spans, complete={b.complete}, built in {b.build_secs:.0f} s")
        return
    run(args.quick, log_rows, span_rows, args.build_budget)


if __name__ == "__main__":
    main()
