"""Ingestion runs: 1000-point batches against airisd and VictoriaMetrics, and single points.

Every run starts its server on an empty data directory and removes it afterwards, so pairs are
alike and the figure does not depend on what earlier runs left (SQLite slows as the table grows:
see PERF-NOTES). After each batch run the stored points are counted, so the figure is of points
that reached the store, not of points sent.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from procs import Server, free_port, machine_busy_seconds, rss_mb
from servers import airisd_server, airisd_stored_points, airisd_token, vm_server, vm_stored_points
from wrkrun import WrkResult, run_wrk

SERIES = 100
PER_SERIES = 10  # 100 series x 10 timestamps = 1000 points per request
POINTS_PER_REQUEST = SERIES * PER_SERIES
THREADS = 2
CONNECTIONS = 4


@dataclass
class IngestRun:
    target: str  # "airisd" or "victoria-metrics"
    wrk: WrkResult
    points_per_sec: float  # acknowledged points / s
    stored: int  # what the store holds afterwards
    acked: int  # points in 2xx responses
    rss_mb: float  # at the end of the run
    exit_code: int | None

    @property
    def stored_ok(self) -> bool:
        """Every acknowledged point is stored; at most the requests still in flight when wrk stopped
        (one per connection) may be stored without wrk having seen their answer."""
        return self.acked <= self.stored <= self.acked + CONNECTIONS * POINTS_PER_REQUEST


def wait_for_quiet(max_wait_secs: float, *, threshold_pct: float = 25.0) -> float:
    """Wait (bounded) until the rest of the machine uses under ``threshold_pct`` of one core; return
    the last reading. This machine is shared: a neighbour's test run would halve our figures."""
    deadline = time.monotonic() + max_wait_secs
    while True:
        b0 = machine_busy_seconds()
        time.sleep(1.0)
        load = 100 * (machine_busy_seconds() - b0)
        if load < threshold_pct or time.monotonic() >= deadline:
            return load


def _fresh(workdir: Path, name: str) -> Path:
    d = workdir / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def batch_run(target: str, workdir: Path, *, duration_secs: int, base_ms: int, tag: str) -> IngestRun:
    data = _fresh(workdir, f"{target}-{tag}")
    server: Server = airisd_server(data) if target == "airisd" else vm_server(data)
    server.start()
    try:
        if target == "airisd":
            fmt, token = "json", airisd_token(server)
        else:
            fmt, token = "influx", None
        result = run_wrk(server.base_url, "batch.lua",
                         [fmt, str(SERIES), str(PER_SERIES), str(base_ms), token or "-"],
                         server_pid=server.pid, threads=THREADS, connections=CONNECTIONS,
                         duration_secs=duration_secs)
        server.check_alive()
        rss = rss_mb(server.pid)
        stored = vm_stored_points(server) if target != "airisd" else -1
    finally:
        rc = server.stop()
    if target == "airisd":
        stored = airisd_stored_points(data)
    shutil.rmtree(data, ignore_errors=True)
    acked = result.ok * POINTS_PER_REQUEST
    return IngestRun(target, result, acked / result.duration_secs, stored, acked, rss, rc)


@dataclass
class SingleRun:
    wrk: WrkResult
    stored: int
    exit_code: int | None

    connections: int

    @property
    def req_per_sec(self) -> float:
        return self.wrk.ok / self.wrk.duration_secs

    @property
    def stored_ok(self) -> bool:
        return self.wrk.ok <= self.stored <= self.wrk.ok + self.connections


def single_run(workdir: Path, *, duration_secs: int, connections: int = 32) -> SingleRun:
    data = _fresh(workdir, "airisd-single")
    server = airisd_server(data).start()
    try:
        token = airisd_token(server)
        result = run_wrk(server.base_url, "single.lua", [token or "-"], server_pid=server.pid, threads=2,
                         connections=connections, duration_secs=duration_secs, latency=True)
        server.check_alive()
    finally:
        rc = server.stop()
    stored = airisd_stored_points(data)
    shutil.rmtree(data, ignore_errors=True)
    return SingleRun(result, stored, rc, connections)


def idle_rss(workdir: Path, *, settle_secs: float = 2.0) -> float:
    data = _fresh(workdir, "airisd-idle")
    server = airisd_server(data).start()
    try:
        time.sleep(settle_secs)
        return rss_mb(server.pid)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def profiled_batch_run(workdir: Path, out: Path, *, secs: int, base_ms: int,
                       rate: int = 100) -> tuple[IngestRun, dict[str, float]]:
    """An extra airisd batch run with py-spy attached (its figure is not one of the medians: py-spy
    pauses the process briefly at every sample), and the CPU % of its main and other threads."""
    from pyspy import record, thread_cpu, wait_recorded

    data = _fresh(workdir, "airisd-profile")
    server = airisd_server(data).start()
    try:
        token = airisd_token(server)
        spy = record(server.pid, out, secs=secs, rate=rate)
        args = ["json", str(SERIES), str(PER_SERIES), str(base_ms), token or "-"]
        before, t0 = thread_cpu(server.pid), time.monotonic()
        result = run_wrk(server.base_url, "batch.lua", args, server_pid=server.pid, threads=THREADS,
                         connections=CONNECTIONS, duration_secs=secs + 2)
        after, wall = thread_cpu(server.pid), time.monotonic() - t0
        threads = {k: 100 * (after[k] - before[k]) / wall for k in after}
        wait_recorded(spy, out, timeout_secs=30)
        rss = rss_mb(server.pid)
    finally:
        rc = server.stop()
    stored = airisd_stored_points(data)
    shutil.rmtree(data, ignore_errors=True)
    acked = result.ok * POINTS_PER_REQUEST
    return IngestRun("airisd", result, acked / result.duration_secs, stored, acked, rss, rc), threads


def ceiling_run(workdir: Path, *, duration_secs: int, connections: int = 32) -> WrkResult:
    """The machine's HTTP ceiling now (bench/ceiling.py), with the single-point run's load."""
    port = free_port()
    server = Server("ceiling", [sys.executable, str(Path(__file__).with_name("ceiling.py")), str(port)],
                    f"http://127.0.0.1:{port}/", workdir / "ceiling.log", base_url=f"http://127.0.0.1:{port}")
    server.start()
    try:
        return run_wrk(server.base_url, "single.lua", ["-"], server_pid=server.pid, threads=2,
                       connections=connections, duration_secs=duration_secs, latency=True)
    finally:
        server.stop()
