"""Profile airisd under batch load with py-spy and say where its CPU goes.

``py-spy record --threads --format raw`` writes one line per distinct stack: ``thread (TID): NAME;
frame;frame;... COUNT``, each frame ``function (file:line)``. A sample is charged to the category of
its deepest frame that a rule recognises; for our own SQLite calls the source line itself tells
COMMIT from executemany. py-spy skips idle threads, but not always a worker blocked on its queue's
condition variable: stacks ending there are counted apart as "waiting", not as work. The CPU each
thread really used comes from /proc (``thread_cpu``), not from sample counts.
"""

from __future__ import annotations

import linecache
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from procs import cpu_seconds
from servers import ROOT

PYSPY = Path(sys.executable).parent / "py-spy"
WAITING = "waiting (worker idle on its queue)"
_IDLE_LEAVES = ("Condition.wait (threading.py", "Queue.get (queue.py", "Event.wait (threading.py")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")


def _source(file: str, line: int) -> str:
    for base in (ROOT, Path("/")):
        path = base / file
        if path.exists():
            return linecache.getline(str(path), line)
    return ""


def categorize(func: str, file: str, line: int) -> str | None:
    """The category of one frame, or None to look at its caller."""
    if file.endswith(("sqlite/base.py", "sqlite/metrics_store.py")):
        text = _source(file, line)
        if "COMMIT" in text:
            return "SQLite COMMIT"
        if "BEGIN" in text:
            return "SQLite BEGIN"
        if "executemany" in text:
            return "SQLite executemany (points)"
        if "INSERT INTO series" in text:
            return "SQLite insert series"
        if func == "series_key" or "series_key" in text:
            return "series keys (orjson, sorted labels)"
        return "row tuples (store write loop)"
    if file.endswith("http_metrics/decode.py") or file.endswith("airisd/timeparse.py"):
        if ".decode(" in _source(file, line):
            return "msgspec JSON decode"
        return "validation (check_point, timestamps)"
    if file.endswith("airisd/pipeline.py"):
        return "pipeline (queue, acks)"
    if "airisd/auth/" in file or "/jwt/" in file:
        return "auth (bearer token check)"
    if "selfmetrics" in file:
        return "self-metrics"
    if "airisd/http/" in file or "inputs/http_metrics" in file or "airisd/model.py" in file:
        return "airisd handlers (body, envelope)"
    if "starlette/" in file:
        return "Starlette"
    if "uvicorn/" in file or "httptools" in file:
        return "uvicorn (Python side)"
    if "anyio/" in file or file.endswith(("threading.py", "queue.py", "concurrent/futures/thread.py")):
        return "anyio threads / handoff"
    if file.endswith("asyncio/runners.py"):
        return "uvloop + httptools (native: sockets, parsing, callbacks)"
    if "asyncio/" in file:
        return "asyncio"
    return None


@dataclass
class Profile:
    rate: int
    secs: float
    samples: int = 0  # working samples; ``waiting`` ones are not in it
    waiting: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_thread: Counter[str] = field(default_factory=Counter)
    by_thread_category: dict[str, Counter[str]] = field(default_factory=dict)


def summarize(raw: Path, *, rate: int, secs: float) -> Profile:
    prof = Profile(rate, secs)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread (") else "?"
        thread = "worker threads" if "worker" in thread.lower() else thread
        category = "other"
        if frames[-1].startswith(_IDLE_LEAVES):
            prof.waiting += n
            continue
        for frame in reversed(frames[1:]):
            m = _FRAME.match(frame)
            if m and (c := categorize(m["func"], m["file"], int(m["line"]))):
                category = c
                break
        prof.samples += n
        prof.by_category[category] += n
        prof.by_thread[thread] += n
        prof.by_thread_category.setdefault(thread, Counter())[category] += n
    return prof


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the main thread and of all the others together."""
    out = {"main thread": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            secs = cpu_seconds(pid, tid=int(task.name))
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        out["main thread" if int(task.name) == pid else "other threads"] += secs
    return out


def record(pid: int, out: Path, *, secs: int, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy on a running process; the caller waits for it."""
    cmd = [str(PYSPY), "record", "-p", str(pid), "-d", str(secs), "-r", str(rate), "--threads",
           "--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_recorded(proc: subprocess.Popen[bytes], out: Path, *, timeout_secs: float) -> None:
    _, err = proc.communicate(timeout=timeout_secs)
    deadline = time.monotonic() + 5
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
