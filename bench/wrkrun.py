"""Run wrk with one of bench/lua/*.lua and read back its ``BENCH {json}`` line, plus the CPU the
server, wrk itself and everything else on the machine used during the run."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import children_cpu_seconds, cpu_seconds, machine_busy_seconds, niced, prioritize

LUA = Path(__file__).resolve().parent / "lua"


@dataclass
class WrkResult:
    raw: dict[str, Any]  # what the Lua done() printed
    wall_secs: float
    server_cpu_pct: float  # of one core
    wrk_cpu_pct: float
    other_cpu_pct: float  # the rest of the machine: other tenants, the kernel's share, ...
    text: str  # wrk's own report

    @property
    def duration_secs(self) -> float:
        return float(self.raw["duration_us"]) / 1e6

    @property
    def ok(self) -> int:
        """Responses with a 2xx status."""
        return sum(n for status, n in self.raw["statuses"].items() if 200 <= int(status) < 300)

    @property
    def not_ok(self) -> int:
        """Non-2xx responses plus socket errors and timeouts."""
        e = self.raw["errors"]
        return self.raw["requests"] - self.ok + e["connect"] + e["read"] + e["write"] + e["timeout"]

    def latency_ms(self, which: str) -> float:
        return float(self.raw["latency_us"][which]) / 1000


def run_wrk(url: str, script: str, args: list[str], *, server_pid: int, threads: int, connections: int,
            duration_secs: int, latency: bool = False) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_secs}s", "--timeout", "10s",
           "-s", str(LUA / script)]
    if latency:
        cmd.append("--latency")
    cmd += [url, "--", *args]
    def sample() -> tuple[float, float, float, float]:
        return cpu_seconds(server_pid), children_cpu_seconds(), machine_busy_seconds(), time.monotonic()

    cpu0, kids0, busy0, t0 = sample()
    with subprocess.Popen(niced(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        prioritize(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=duration_secs + 60)
        except BaseException:
            proc.kill()
            raise
    cpu1, kids1, busy1, t1 = sample()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr.strip() or stdout.strip()}")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{stdout}\n{stderr}")
    wall = t1 - t0
    server, wrk = cpu1 - cpu0, kids1 - kids0
    return WrkResult(
        raw=json.loads(line[len("BENCH "):]),
        wall_secs=wall,
        server_cpu_pct=100 * server / wall,
        wrk_cpu_pct=100 * wrk / wall,
        other_cpu_pct=max(0.0, 100 * (busy1 - busy0 - server - wrk) / wall),
        text=stdout.split("BENCH ", 1)[0].rstrip(),
    )
