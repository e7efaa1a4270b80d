"""Servers under test as child processes, and what /proc says about them.

CPU is read from /proc/PID/stat (utime + stime of every thread of the process), memory from
/proc/PID/status (VmRSS). The machine's total busy time from /proc/stat lets the report show how
much CPU *other* processes used during a run: on a shared 2-core machine that is the noise to
watch.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Servers and wrk run at this niceness (root only): on a shared machine a neighbour's test suite then
# disturbs the runs less. Both peers get the same; BENCH_NICE=0 turns it off.
NICE = int(os.environ.get("BENCH_NICE", "-10" if os.geteuid() == 0 else "0"))


def niced(cmd: list[str]) -> list[str]:
    """``nice`` execs the command, so the PID we get is the server's own."""
    return ["nice", "-n", str(NICE), *cmd] if NICE else cmd


def prioritize(pid: int) -> None:
    """With autogroup scheduling (the default) a process's nice counts only inside its session's
    group: give the new session (``start_new_session``) of a server or of wrk the same niceness."""
    if not NICE:
        return
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(NICE))
    except OSError:
        pass  # no autogroup: the plain nice of niced() applies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int, *, tid: int | None = None) -> float:
    """User + system CPU of a live process (all its threads) and of its children, live or reaped
    (airisd's store writer processes), or of one of its threads, in seconds."""
    with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()  # the command name may contain spaces
    own = int(rest[11]) + int(rest[12])  # fields 14 and 15 of proc(5): utime, stime
    if tid is not None:
        return own / CLK_TCK
    total = own / CLK_TCK + (int(rest[13]) + int(rest[14])) / CLK_TCK  # cutime, cstime: reaped children
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile: now in cutime
            total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU of reaped children (wrk, sqlite3...): take the difference around one child's run."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class ServerDied(RuntimeError):
    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class Server:
    """One server process: started with a command, ready when ``health_url`` answers 2xx."""

    name: str
    cmd: list[str]
    health_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    password: str = ""  # the admin password it was started with, if any
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def start(self, *, timeout: float = 30.0, attempts: int = 2) -> Server:
        """Start and wait for health. A start killed by a signal (the machine is shared, and a
        neighbour's cleanup may hit us) is retried once; an exit with an error code is not."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout)
            except ServerDied as exc:
                if exc.returncode >= 0 or attempt == attempts:
                    raise
                print(f"[bench] {exc}; starting it again", file=sys.stderr, flush=True)
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(niced(self.cmd), stdout=logf, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env}, start_new_session=True)
        prioritize(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc, self.proc = self.proc.returncode, None
                raise ServerDied(f"{self.name} exited with {rc} at start; see {self.log_path}", rc)
            try:
                if httpx.get(self.health_url, timeout=1.0).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.health_url} within {timeout} s; "
                           f"see {self.log_path}")

    def check_alive(self) -> None:
        """ServerDied if the server exited on its own (or something else on the machine stopped it)."""
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            raise ServerDied(f"{self.name} exited with {rc} during the run, before the bench stopped it; "
                             f"see {self.log_path}", rc)

    def stop(self, *, timeout: float = 20.0) -> int | None:
        """SIGTERM (airisd flushes and exits 0), SIGKILL if it hangs; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc
