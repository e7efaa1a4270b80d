"""random_walk: an input that emits metric points following a random walk, on an interval.

It shows the parts every input has: a Config with defaults and ``validate()``, a ``run()`` loop that
reports readiness with ``task_status.started()`` and sleeps on ``ctx.clock`` (so tests use a fake
clock), batches handed to ``ctx.emit``, backpressure handled by counting and carrying on, and
self-metrics registered on ``ctx.metrics``.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import anyio
from anyio.abc import TaskStatus

from airisd.errors import Backpressure
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Point, Signal
from airisd.plugin import Input, Plugin, PluginConfig


class RandomWalkConfig(PluginConfig):
    """Options of [[inputs.random_walk]]. Defaults live here and nowhere else."""

    metric: str = "random_walk"  # the points' name
    series: int = 1  # how many independent walks; each gets the label series="0", "1", ...
    interval_secs: float = 10.0
    step: float = 1.0  # each tick moves a walk by a uniform amount in [-step, +step]
    start: float = 0.0
    labels: dict[str, str] = {}
    seed: int = 0  # 0: a different walk each run; otherwise reproducible

    def validate(self) -> None:
        if not self.metric:
            raise ValueError("metric must not be empty")
        if not 1 <= self.series <= 10_000:
            raise ValueError(f"series must be between 1 and 10000, got {self.series}")
        if not self.interval_secs > 0:
            raise ValueError(f"interval_secs must be positive, got {self.interval_secs}")
        if self.step < 0:
            raise ValueError(f"step must be >= 0, got {self.step}")
        if "series" in self.labels:
            raise ValueError("labels: 'series' is set by the input itself")


class RandomWalkInput(Input):
    name: ClassVar[str] = "random_walk"
    role: ClassVar[str | None] = "metrics"  # runs where the metrics role runs
    Config: ClassVar[type[PluginConfig]] = RandomWalkConfig
    description: ClassVar[str] = "Example: metric points following a random walk, every interval_secs"
    config: RandomWalkConfig

    def __init__(self, config: RandomWalkConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.rng = random.Random(config.seed or None)
        self.values = [config.start] * config.series
        self.m_points = ctx.metrics.counter("random_walk_points_total", "Points emitted by random_walk", ())
        self.m_dropped = ctx.metrics.counter(
            "random_walk_dropped_total", "Points dropped because the pipeline was full", ())

    def tick(self) -> Batch:
        """Advance every walk one step and return the points, stamped with the clock's time."""
        now = self.ctx.clock.time_ns()
        points = []
        for i in range(len(self.values)):
            self.values[i] += self.rng.uniform(-self.config.step, self.config.step)
            labels = {**self.config.labels, "series": str(i)}
            points.append(Point(name=self.config.metric, value=self.values[i], ts=now, labels=labels))
        return Batch(Signal.METRICS, points)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            batch = self.tick()
            try:
                await self.ctx.emit(batch)
                self.m_points.inc(len(batch))
            except Backpressure:  # queues full: count it, try again next tick; never crash
                self.m_dropped.inc(len(batch))
            await self.ctx.clock.sleep(self.config.interval_secs)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [RandomWalkInput]
