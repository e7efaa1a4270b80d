"""The daemon's own metrics, rendered in the Prometheus text format (0.0.4).

A small registry rather than prometheus_client: one registry per daemon (no global state, so tests
can run several daemons in one process) and no label-cardinality surprises.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    """HELP text escapes only backslash and newline; a \\" there is a parse error in Prometheus."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _labels(self, values: LabelValues, extra: str = "") -> str:
        parts = [f'{k}="{_escape(v)}"' for k, v in zip(self.labelnames, values, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = self.header()
        for labels, value in sorted(self._values.items()):
            lines.append(f"{self.name}{self._labels(labels)} {_fmt(value)}")
        return lines


class Gauge(_Metric):
    """A gauge whose value is set, or read from a callback at render time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {}
        self._callbacks: dict[LabelValues, Callable[[], float]] = {}

    def set(self, value: float, *labels: str) -> None:
        self._values[labels] = value

    def set_function(self, fn: Callable[[], float], *labels: str) -> None:
        self._callbacks[labels] = fn

    def get(self, *labels: str) -> float:
        if labels in self._callbacks:
            return float(self._callbacks[labels]())
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = self.header()
        values = dict(self._values)
        for labels, fn in self._callbacks.items():
            try:
                values[labels] = float(fn())
            except Exception:  # a broken callback must not break the scrape
                continue
        for labels, value in sorted(values.items()):
            lines.append(f"{self.name}{self._labels(labels)} {_fmt(value)}")
        return lines


DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        # Per row: the count of observations in each bucket alone (not cumulative: one increment per
        # observation, found by bisection, instead of a Python loop over every bound), then the +Inf
        # bucket, sum and count. render() makes the counts cumulative, as Prometheus wants.
        self._series: dict[LabelValues, list[float]] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            row = self._series.get(labels)
            if row is None:
                row = self._series[labels] = [0.0] * (len(self.buckets) + 3)
            # the first bound >= value; past the last (or NaN, which is <= no bound): the +Inf bucket
            row[bisect_left(self.buckets, value) if value == value else -3] += 1
            row[-2] += value
            row[-1] += 1

    def count(self, *labels: str) -> float:
        row = self._series.get(labels)
        return row[-1] if row else 0.0

    def render(self) -> list[str]:
        lines = self.header()
        for labels, row in sorted(self._series.items()):
            cumulative = 0.0
            for i, bound in enumerate(self.buckets):
                cumulative += row[i]
                le = 'le="' + _fmt(bound) + '"'
                lines.append(f"{self.name}_bucket{self._labels(labels, le)} {_fmt(cumulative)}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{self._labels(labels, inf)} {_fmt(row[-1])}")
            lines.append(f"{self.name}_sum{self._labels(labels)} {_fmt(row[-2])}")
            lines.append(f"{self.name}_count{self._labels(labels)} {_fmt(row[-1])}")
        return lines


class Registry:
    def __init__(self, prefix: str = "airisd_") -> None:
        self.prefix = prefix
        self._metrics: dict[str, _Metric] = {}

    def _get(self, cls: type[_Metric], name: str, help_text: str, labelnames: Iterable[str], **kw: object) -> _Metric:
        full = self.prefix + name
        metric = self._metrics.get(full)
        if metric is None:
            metric = cls(full, help_text, labelnames, **kw)  # type: ignore[arg-type]
            self._metrics[full] = metric
        elif not isinstance(metric, cls):
            raise TypeError(f"metric {full} already registered as {metric.kind}")
        return metric

    def counter(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> Counter:
        return self._get(Counter, name, help_text, labelnames)  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> Gauge:
        return self._get(Gauge, name, help_text, labelnames)  # type: ignore[return-value]

    def histogram(
        self, name: str, help_text: str, labelnames: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._get(Histogram, name, help_text, labelnames, buckets=buckets)  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._metrics):
            lines.extend(self._metrics[name].render())
        return "\n".join(lines) + "\n"
