"""One evaluation round of N enabled metric rules on the embedded store (target: 1,000 rules < 2 s).

    .venv/bin/python bench/alerts.py [--rules 1000] [--series 10000] [--points 60] [--rounds 5]

The metrics store holds ``--series`` series of ``cpu.usage`` (label host=host-i), each with
``--points`` samples one second apart ending now; rule i watches host-i (avg over 1m, gt 50), so
about half the rules hold and their alerts move pending -> firing (state writes included). No
channels: this measures queries and state, not delivery. Prints one line per round and a
markdown row with the median.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airisd_plugins.outputs.sqlite.metrics_store import MetricStore

from airisd.alerting.config import alerting_config
from airisd.alerting.engine import AlertEngine
from airisd.alerting.inprocess import StoreMetricSource
from airisd.alerting.rules import rule_from_json
from airisd.alerting.store import AlertStore
from airisd.model import Point
from airisd.plugin import Clock, PluginContext
from airisd.selfmetrics import Registry


async def _no_emit(batch: object) -> None:
    return None


def fill(store: MetricStore, series: int, points: int, now_ns: int) -> None:
    rng = random.Random(1)
    batch: list[Point] = []
    for i in range(series):
        base = rng.uniform(0, 100)
        for j in range(points):
            ts = now_ns - (points - j) * 1_000_000_000
            batch.append(
                Point(name="cpu.usage", value=base + rng.uniform(-5, 5), ts=ts, labels={"host": f"host-{i}"})
            )
        if len(batch) >= 50_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        clock = Clock()
        store = MetricStore(data)
        store.open()
        t0 = time.perf_counter()
        fill(store, max(args.series, args.rules), args.points, clock.time_ns())
        took = time.perf_counter() - t0
        print(f"filled {max(args.series, args.rules)} series x {args.points} points in {took:.1f} s")
        ctx = PluginContext(
            data_dir=data, log=logging.getLogger("bench"), metrics=Registry(), emit=_no_emit, clock=clock
        )
        alerts = AlertStore(data)
        alerts.open()
        for i in range(args.rules):
            rule = rule_from_json(
                {
                    "name": f"cpu high {i}",
                    "severity": "warning",
                    "channels": [],
                    "conditions": {
                        "metric": "cpu.usage",
                        "operator": "gt",
                        "threshold": 50,
                        "duration": "0s",
                        "labels": {"host": f"host-{i}"},
                    },
                },
                channel_names=set(),
            )
            alerts.create_rule(rule, now_ns=clock.time_ns())
        engine = AlertEngine(
            alerts, channel_types={}, config=alerting_config({}), ctx=ctx, metrics=StoreMetricSource(store)
        )
        await engine.start()
        times = []
        for n in range(args.rounds):
            result = await engine.evaluate_once()
            times.append(result.seconds)
            firing = sum(1 for a in engine.active_alerts() if a.state == "firing")
            print(
                f"round {n + 1}: {result.rules} rules in {result.seconds:.3f} s, {len(result.transitions)} "
                f"transitions, {firing} firing, {len(result.errors)} errors"
            )
        await engine.shutdown()
        store.close()
        med = statistics.median(times)
        verdict = "ok" if med < 2.0 else "MISSED"
        print(
            f"| alert evaluation round, {args.rules} metric rules, {max(args.series, args.rules)} series | "
            f"{med:.3f} s median of {args.rounds} (first {times[0]:.3f} s) | < 2 s | {verdict} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
