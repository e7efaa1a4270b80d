"""What a disk buffer costs on ingest: `POST /metrics/batch` into `airisd run --role metrics` whose
pipeline has the sqlite store (on: the metrics role needs it) and a `file` output, once with the
file output's buffer in memory and once on disk, alternating in the same run. Prints a markdown
table of medians and the disk/memory ratio.

    .venv/bin/python bench/buffer_cost.py [--runs 3] [--secs 10] [--workdir DIR]

Each run starts airisd on a fresh data directory, drives it with wrk (bench/lua/batch.lua: 1000
points per request, 4 connections unless --connections), stops it with SIGTERM, then checks that the file output holds
at least every acknowledged point (the disk buffer's data is delivered or still on disk; with
SIGTERM and a working target it is delivered).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Server, free_port
from servers import AIRISD, airisd_token
from wrkrun import WrkResult, run_wrk

SERIES, PER_SERIES = 100, 10
POINTS_PER_REQUEST = SERIES * PER_SERIES
CONFIG = """
[agent]
role = "metrics"
[auth]
rate_limit_per_minute = 0
[[inputs.http_metrics]]
[[outputs.sqlite]]
retention_days = 0.0
[[outputs.file]]
path = "{path}"
batch_size = 10000  # the file output keeps up (fsync per write): the buffer's cost is measured, not a full queue
max_queue_items = 200000
[outputs.file.buffer]
type = "{kind}"
"""


def one_run(workdir: Path, kind: str, secs: int, base_ms: int, connections: int) -> tuple[WrkResult, int, int]:
    run_dir = workdir / f"run-{kind}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    target = run_dir / "out.jsonl"
    cfg = run_dir / "airisd.toml"
    cfg.write_text(CONFIG.format(path=target, kind=kind))
    port = free_port()
    password = "bench-" + secrets.token_hex(8)
    cmd = [str(AIRISD), "run", "--config", str(cfg), "--data-dir", str(run_dir / "data"),
           "--set", f'listeners.metrics.address="127.0.0.1:{port}"']
    server = Server("airisd", cmd, f"http://127.0.0.1:{port}/health", run_dir / "airisd.log",
                    env={"AIRISD_ADMIN_PASSWORD": password}, base_url=f"http://127.0.0.1:{port}",
                    password=password).start()
    try:
        token = airisd_token(server)
        result = run_wrk(server.base_url, "batch.lua",
                         ["json", str(SERIES), str(PER_SERIES), str(base_ms), token or "-"],
                         server_pid=server.pid, threads=2, connections=connections, duration_secs=secs)
        server.check_alive()
    finally:
        server.stop()
    with target.open("rb") as fh:
        lines = sum(1 for _ in fh)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result, result.ok * POINTS_PER_REQUEST, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (concurrent requests)")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache" / "buffer_cost")
    args = ap.parse_args()
    rates: dict[str, list[float]] = {"memory": [], "disk": []}
    cpu: dict[str, list[float]] = {"memory": [], "disk": []}
    problems: list[str] = []
    base_ms = int(time.time() * 1000) - 86_400_000
    order = [("memory", "disk") if i % 2 == 0 else ("disk", "memory") for i in range(args.runs)]
    for i, pair in enumerate(order):
        for kind in pair:
            result, acked, lines = one_run(args.workdir, kind, args.secs, base_ms + i * 10 * 3_600_000,
                                             args.connections)
            rate = acked / result.duration_secs
            rates[kind].append(rate)
            cpu[kind].append(result.server_cpu_pct)
            if result.not_ok:
                statuses = {k: v for k, v in result.raw["statuses"].items() if not 200 <= int(k) < 300}
                problems.append(f"{kind} run {i + 1}: {result.not_ok} requests failed (statuses {statuses})")
            if lines < acked:
                problems.append(f"{kind} run {i + 1}: file has {lines} lines for {acked} acknowledged points")
            print(f"[bench] {kind} run {i + 1}: {rate:,.0f} points/s, server CPU {result.server_cpu_pct:.0f}%, "
                  f"other {result.other_cpu_pct:.0f}%", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"| buffer of the file output | points/s (median of {args.runs}) | runs | server CPU % |")
    print("|---|---:|---|---:|")
    for kind in ("memory", "disk"):
        runs = ", ".join(f"{r:,.0f}" for r in rates[kind])
        print(f"| {kind} | {med[kind]:,.0f} | {runs} | {statistics.median(cpu[kind]):.0f} |")
    print(f"\ndisk / memory: **{med['disk'] / med['memory']:.2f}** "
          f"(POST /metrics/batch, 1000 points per request, {args.connections} connections, {args.secs} s per run; "
          "sqlite store on in both)")
    for p in problems:
        print(f"- problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
