"""What every bench/backends script sends and how it times it: the same points and log records for
each backend, written through the output plugin's own write() in batches, as the runner does."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airisd.model import Batch, LogRecord, Point, Signal
from airisd.plugin import Output, PluginContext
from airisd.selfmetrics import Registry

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
HEADER = ("| backend | signal | batch | events | events/s (median of 3) | range |\n"
          "|---|---|---:|---:|---:|---:|")


def points(n: int, run: int) -> list[Point]:
    """n points of 1,000 series (20 names x 50 hosts), an hour old, distinct per run."""
    t0 = (int(time.time()) - 3600) * 1_000_000_000 + run
    return [Point(name=f"bench_{i % 20}", value=i * 0.25, ts=t0 + i * 1000,
                  labels={"host": f"h{i % 50}", "region": "eu", "run": str(run)}) for i in range(n)]


def logs(n: int, run: int) -> list[LogRecord]:
    t0 = (int(time.time()) - 3600) * 1_000_000_000 + run
    return [LogRecord(ts=t0 + i * 1000, level=LEVELS[i % 4], service=f"svc{i % 8}",
                      message=f"request {i} served in {i % 97} ms for user {i % 1000}", trace_id=f"{i:032x}",
                      labels={"env": "prod"}, attributes={"status": 200 + i % 5, "path": "/api/v1/items"})
            for i in range(n)]


async def _no_emit(batch: Batch) -> None:
    raise AssertionError("an output does not emit")


def plugin_ctx(data_dir: Path = Path("/nonexistent"), emit: Any = _no_emit) -> PluginContext:
    return PluginContext(data_dir, logging.getLogger("bench"), Registry(), emit)


async def deliver(out: Output, signal: Signal, items: Sequence[Any], batch: int) -> float:
    """Events per second for writing items in batches of ``batch``."""
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        await out.write(Batch(signal, list(items[i:i + batch])))
    return len(items) / (time.perf_counter() - started)


def spread(rates: Sequence[float]) -> str:
    """The last two cells of a row: the median and the range of the runs."""
    return f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |"


def print_table(rows: list[str]) -> None:
    print(HEADER)
    for row in rows:
        print(row)
