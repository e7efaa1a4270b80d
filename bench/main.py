"""`make bench`: airisd's figures next to VictoriaMetrics, printed as markdown.

Runs, each bounded in time, loopback only: batch ingest pairs (airisd, VM, alternating order),
a py-spy profile of batch ingest, single-point ingest, query latency over a 10M-point store, idle
RSS. Exit status 1 if a run lost acknowledged data or saw errors; a missed target is reported,
not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import ingest
import pyspy
import query
import report
from procs import NICE, ServerDied
from servers import ROOT, vm_version

CACHE = ROOT / "bench" / ".cache"


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({model}), {platform.platform()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, victoria-metrics {vm_version()}, "
            f"airisd commit {commit or '?'}; servers and wrk at nice {NICE}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


T = TypeVar("T")


def retry_once(run: Callable[[], T]) -> T:
    """Run again once if the server was stopped by a signal that did not come from us: the machine
    is shared, and a neighbour's cleanup has been seen to SIGTERM processes it did not start."""
    try:
        return run()
    except ServerDied as exc:
        if exc.returncode >= 0:
            raise
        print(f"[bench] {exc}; running it again", file=sys.stderr, flush=True)
        return run()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="airisd/VM batch pairs (default 3)")
    p.add_argument("--secs", type=int, default=12, help="seconds per batch run (default 12)")
    p.add_argument("--single-secs", type=int, default=12, help="seconds of the single-point run (default 12)")
    p.add_argument("--profile-secs", type=int, default=10, help="seconds of py-spy sampling (default 10)")
    p.add_argument("--query-series", type=int, default=1000)
    p.add_argument("--query-per-series", type=int, default=10_000)
    p.add_argument("--query-requests", type=int, default=200)
    p.add_argument("--quiet-wait", type=float, default=5.0,
                   help="before each run, wait up to this long for other processes to calm down (default 5)")
    p.add_argument("--only", default="batch,profile,single,query,rss",
                   help="comma-separated subset of batch,profile,single,query,rss")
    p.add_argument("--quick", action="store_true", help="a smoke test: 1 pair, 3 s runs, a 100k-point store")
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("BENCH_DIR", CACHE / "run")),
                   help="where runs keep their data (default bench/.cache/run, or $BENCH_DIR)")
    a = p.parse_args(argv)
    if a.quick:
        a.pairs, a.secs, a.single_secs, a.profile_secs = 1, 3, 3, 3
        a.query_series, a.query_per_series, a.query_requests = 100, 1000, 50
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    only = set(args.only.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC)
    lines = [f"# airisd benchmarks, {stamp:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine()}.", "",
             f"Command: `{' '.join(['bench/run.sh', *argv])}` (`make bench` runs it without arguments).", ""]
    raw: dict[str, object] = {"date": stamp.isoformat(), "machine": machine()}
    problems: list[str] = []
    med = single = lat = idle = None
    query_points = 0

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if "rss" in only:
        idle = ingest.idle_rss(args.workdir)
        log(f"idle RSS {idle:.1f} MB")
        lines += ["## Idle RSS", "", f"`airisd run --role metrics`, 2 s after it answered /health: "
                  f"**{idle:.1f} MB** VmRSS.", ""]
        raw["idle_rss_mb"] = idle

    if "batch" in only:
        runs = []
        for i in range(args.pairs):
            order = ["airisd", "victoria-metrics"] if i % 2 == 0 else ["victoria-metrics", "airisd"]
            for target in order:
                load = ingest.wait_for_quiet(args.quiet_wait)
                run = retry_once(partial(ingest.batch_run, target, args.workdir, duration_secs=args.secs,
                                         base_ms=now_ms() - 3 * 3600 * 1000, tag=str(i)))
                log(f"pair {i + 1} {target}: {run.points_per_sec:,.0f} points/s, "
                    f"CPU {run.wrk.server_cpu_pct:.0f}%, stored {run.stored:,}/{run.acked:,}, "
                    f"non-2xx {run.wrk.not_ok} (other load before: {load:.0f}%)")
                if run.wrk.not_ok or not run.stored_ok:
                    problems.append(f"batch {target} pair {i + 1}: non-2xx {run.wrk.not_ok}, "
                                    f"stored {run.stored} for {run.acked} acknowledged")
                runs.append(run)
        # Report pairs in the order they ran.
        section, med = report.batch_section(runs)
        lines += ["## Batch ingest: 1000-point batches, 4 connections", "",
                  f"wrk -t{ingest.THREADS} -c{ingest.CONNECTIONS} -d{args.secs}s, bench/lua/batch.lua: "
                  f"{ingest.SERIES} series x {ingest.PER_SERIES} timestamps per request, timestamps never "
                  "repeated, airisd `POST /metrics/batch` (JSON) and VictoriaMetrics `POST /write` "
                  "(Influx line protocol), each run on an empty data directory; pairs alternate which goes "
                  "first.", "",
                  *section, ""]
        raw["batch"] = [{"target": r.target, "points_per_sec": r.points_per_sec, "stored": r.stored,
                         "acked": r.acked, "rss_mb": r.rss_mb, "server_cpu_pct": r.wrk.server_cpu_pct,
                         "wrk_cpu_pct": r.wrk.wrk_cpu_pct, "other_cpu_pct": r.wrk.other_cpu_pct,
                         "wrk": r.wrk.raw} for r in runs]
        raw["batch_medians"] = med

    if "profile" in only:
        out = args.workdir.parent / "profile-batch.txt"
        ingest.wait_for_quiet(args.quiet_wait)
        prun, threads = ingest.profiled_batch_run(args.workdir, out, secs=args.profile_secs,
                                         base_ms=now_ms() - 3 * 3600 * 1000)
        prof = pyspy.summarize(out, rate=100, secs=args.profile_secs)
        log(f"profile: {prof.samples} samples in {out}")
        lines += ["## Where airisd's time goes (batch ingest)", "",
                  *report.profile_section(prof, prun, threads), "",
                  f"Raw stacks: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}` "
                  "(flamegraph.pl or speedscope read them).", ""]
        raw["profile"] = {"categories": dict(prof.by_category), "threads": dict(prof.by_thread),
                          "samples": prof.samples, "waiting": prof.waiting, "thread_cpu_pct": threads}

    if "single" in only:
        ingest.wait_for_quiet(args.quiet_wait)
        ceiling = ingest.ceiling_run(args.workdir, duration_secs=min(args.single_secs, 6))
        ceiling_rps = ceiling.ok / ceiling.duration_secs
        log(f"HTTP ceiling now: {ceiling_rps:,.0f} req/s")
        single = retry_once(lambda: ingest.single_run(args.workdir, duration_secs=args.single_secs))
        log(f"single: {single.req_per_sec:,.0f} req/s, p99 {single.wrk.latency_ms('p99'):.1f} ms")
        if single.wrk.not_ok or not single.stored_ok:
            problems.append(f"single: non-2xx {single.wrk.not_ok}, "
                            f"stored {single.stored} for {single.wrk.ok} acked")
        lines += ["## Single point per request: `POST /metrics`, 32 connections", "",
                  f"wrk -t2 -c32 -d{args.single_secs}s --latency, bench/lua/single.lua (100 series, server "
                  "timestamps); each 201 is sent after the point's transaction committed.", "",
                  *report.single_section(single), "",
                  f"The machine's HTTP ceiling just before (bench/ceiling.py: uvicorn + raw ASGI answering "
                  f"201, same load): **{ceiling_rps:,.0f} req/s** (p99 {ceiling.latency_ms('p99'):.1f} ms, "
                  f"other processes {ceiling.other_cpu_pct:.0f}% CPU); BRIEF.md measured 31,372 req/s on a "
                  f"quiet machine. airisd reached {single.req_per_sec / ceiling_rps:.0%} of it.", ""]
        raw["single"] = {"ceiling_req_per_sec": ceiling_rps, "req_per_sec": single.req_per_sec,
                         "stored": single.stored, "wrk": single.wrk.raw,
                         "server_cpu_pct": single.wrk.server_cpu_pct}

    if "query" in only:
        log("query store: building or reusing the cache")
        store = query.build_store(CACHE, series=args.query_series, per_series=args.query_per_series)
        ingest.wait_for_quiet(args.quiet_wait)
        lat, qrss = query.measure(store, args.workdir, n=args.query_requests)
        query_points = store.points
        log("query: " + "; ".join(f"{q.label} p50 {q.p50_ms:.1f} ms p99 {q.p99_ms:.1f} ms" for q in lat))
        lines += ["## Query latency: `GET /metrics/query`", "",
                  f"{args.query_requests} sequential requests after 20 warm-up ones, one keep-alive "
                  "connection (httpx), on a copy of the cached store.", "",
                  *report.query_section(store, lat, qrss), ""]
        raw["query"] = [asdict(q) for q in lat]

    targets = report.targets_section(med, single, lat, idle, query_points=query_points)
    lines += ["## Targets (issue 2)", "", *targets, ""]
    if problems:
        lines += ["## Problems", "", *[f"- {p}" for p in problems], ""]
    text = "\n".join(lines)
    print(text)
    results = CACHE / "results"
    results.mkdir(parents=True, exist_ok=True)
    name = f"{stamp:%Y%m%dT%H%M%S}"
    (results / f"{name}.md").write_text(text)
    (results / f"{name}.json").write_text(json.dumps(raw, indent=1, default=str))
    log(f"report saved to {results / name}.md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
