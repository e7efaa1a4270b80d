"""The markdown report of one `make bench` run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ingest import IngestRun, SingleRun
from pyspy import Profile
from query import Latency, QueryStore


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def per_cpu(run: IngestRun) -> float:
    return run.points_per_sec / max(run.wrk.server_cpu_pct / 100, 1e-9)


def pairs(runs: list[IngestRun]) -> list[tuple[IngestRun, IngestRun]]:
    a = [r for r in runs if r.target == "airisd"]
    v = [r for r in runs if r.target != "airisd"]
    return list(zip(a, v, strict=False))


def batch_section(runs: list[IngestRun]) -> tuple[list[str], dict[str, float]]:
    rows = []
    for i, r in enumerate(runs, 1):
        rows.append([i, r.target, _n(r.points_per_sec), f"{r.wrk.server_cpu_pct:.0f}", _n(per_cpu(r)),
                     f"{r.wrk.latency_ms('p50'):.1f}", f"{r.wrk.latency_ms('p99'):.1f}", r.wrk.not_ok,
                     f"{_n(r.stored)} / {_n(r.acked)} {'ok' if r.stored_ok else 'MISMATCH'}",
                     f"{r.rss_mb:.0f}", f"{r.wrk.wrk_cpu_pct:.0f}", f"{r.wrk.other_cpu_pct:.0f}"])
    lines = _table(["run", "target", "points/s (acked)", "server CPU %", "points per CPU-s", "p50 ms",
                    "p99 ms", "non-2xx", "stored / acked", "RSS MB", "wrk CPU %", "other CPU %"], rows)
    ps = pairs(runs)
    ratios = [a.points_per_sec / v.points_per_sec for a, v in ps]
    cpu_ratios = [per_cpu(a) / per_cpu(v) for a, v in ps]
    med = {
        "airisd_pps": statistics.median(a.points_per_sec for a, _ in ps),
        "vm_pps": statistics.median(v.points_per_sec for _, v in ps),
        "airisd_cpu": statistics.median(a.wrk.server_cpu_pct for a, _ in ps),
        "vm_cpu": statistics.median(v.wrk.server_cpu_pct for _, v in ps),
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
    }
    lines += ["", *_table(["", "airisd", "VictoriaMetrics", "airisd / VM"], [
        ["median points/s", _n(med["airisd_pps"]), _n(med["vm_pps"]), f"{med['ratio']:.3f}"],
        ["median CPU % (of one core)", f"{med['airisd_cpu']:.0f}", f"{med['vm_cpu']:.0f}", ""],
        ["per-pair ratios", "", "", ", ".join(f"{r:.3f}" for r in ratios)],
        ["per-pair ratios per CPU-second", "", "", ", ".join(f"{r:.3f}" for r in cpu_ratios)],
    ])]
    return lines, med


def single_section(run: SingleRun) -> list[str]:
    w = run.wrk
    return _table(["requests/s (201)", "p50 ms", "p90 ms", "p99 ms", "server CPU %", "non-2xx",
                   "stored / acked", "wrk CPU %", "other CPU %"],
                  [[_n(run.req_per_sec), f"{w.latency_ms('p50'):.2f}", f"{w.latency_ms('p90'):.2f}",
                    f"{w.latency_ms('p99'):.2f}", f"{w.server_cpu_pct:.0f}", w.not_ok,
                    f"{_n(run.stored)} / {_n(w.ok)} {'ok' if run.stored_ok else 'MISMATCH'}",
                    f"{w.wrk_cpu_pct:.0f}", f"{w.other_cpu_pct:.0f}"]])


def query_section(store: QueryStore, lat: list[Latency], rss: float) -> list[str]:
    lines = [f"Store: {_n(store.points)} points ({store.series} series x {_n(store.per_series)}, "
             "one every 10 s)"
             + (f", built in {store.build_secs:.1f} s." if store.build_secs else ", from the cache.")
             + f" RSS after the queries: {rss:.0f} MB.", ""]
    lines += _table(["query", "requests", "items per answer", "p50 ms", "p99 ms", "mean ms"],
                    [[q.label, q.n, q.items, f"{q.p50_ms:.2f}", f"{q.p99_ms:.2f}", f"{q.mean_ms:.2f}"]
                     for q in lat])
    return lines


def profile_section(prof: Profile, run: IngestRun, threads: dict[str, float]) -> list[str]:
    lines = [f"py-spy, {prof.rate} Hz for {prof.secs:.0f} s during a batch run "
             f"({_n(run.points_per_sec)} points/s with the profiler attached, other processes "
             f"{run.wrk.other_cpu_pct:.0f}% CPU). CPU by thread (/proc): "
             + ", ".join(f"{t} {pct:.0f}%" for t, pct in threads.items())
             + f". {_n(prof.samples)} working samples; {_n(prof.waiting)} more showed a worker waiting on "
             "its queue and are left out.", ""]
    rows = []
    for cat, n in prof.by_category.most_common():
        per_thread = ", ".join(f"{t}: {100 * c[cat] / prof.samples:.1f}"
                               for t, c in prof.by_thread_category.items() if c[cat])
        rows.append([cat, f"{100 * n / prof.samples:.1f}", per_thread])
    lines += _table(["where", "% of busy samples", "by thread"], rows)
    return lines


def targets_section(med: dict[str, float] | None, single: SingleRun | None, lat: list[Latency] | None,
                    idle_rss: float | None, *, query_points: int = 0) -> list[str]:
    rows = []

    def row(name: str, goal: str, value: str, ok: bool, factor: str) -> None:
        rows.append([name, goal, value, "met" if ok else f"MISSED ({factor})"])

    if med:
        row("batch ingest vs VictoriaMetrics", ">= 0.08x", f"{med['ratio']:.3f}x", med["ratio"] >= 0.08,
            f"{med['ratio'] / 0.08:.2f} of the goal")
    if single:
        rps = single.req_per_sec
        row("single point, 32 connections", ">= 8,000 req/s", _n(rps), rps >= 8000,
            f"{rps / 8000:.2f} of the goal")
    if lat:
        p50 = lat[0].p50_ms
        row(f"query p50, 1 series 1 h interval=1m, {query_points / 1e6:g}M points in the store", "< 50 ms",
            f"{p50:.1f} ms", p50 < 50, f"{p50 / 50:.1f}x the limit")
    if idle_rss is not None:
        row("idle RSS, --role metrics", "< 60 MB", f"{idle_rss:.1f} MB", idle_rss < 60,
            f"{idle_rss / 60:.2f}x the limit")
    return _table(["target", "goal", "measured", "status"], rows)
