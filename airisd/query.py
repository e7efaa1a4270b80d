"""What a store must answer for the roles to query it: one Protocol per signal.

An output that stores data returns one of these from ``Output.query_api(signal)``; ``[stores]`` in
the config picks which output answers each role (the embedded SQLite store by default; ClickHouse,
Elasticsearch or a Jaeger query API when one machine is not enough). The roles and the alert
engine call these methods from worker threads (``anyio.to_thread``), so they are synchronous and
must be safe to call from several threads at once.

Time ranges are inclusive ``[from_ns, to_ns]`` in ns since the epoch. Results are plain Python
values and the records of ``airisd.model``. A store raises ``airisd.errors.TransientError`` when its
backend cannot be reached or fails, which the HTTP layer answers with 503 STORE_UNAVAILABLE (any
other exception would be a 500); bad input is refused before a store is asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from airisd.logquery import Node
from airisd.model import LogRecord, Span

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last")


class SeriesRef(Protocol):
    """One series: a metric name and its labels."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


# (bucket start ns, avg, min, max, sum, count)
Bucket = tuple[int, float, float, float, float, int]


@runtime_checkable
class MetricQuery(Protocol):
    def query_points(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, limit: int
    ) -> tuple[list[tuple[Any, list[tuple[int, float]]]], bool]:
        """Raw (ts, value) points per series whose labels hold every matcher, oldest first, at most
        ``limit`` in all; the bool says whether the limit cut the answer."""
        ...

    def query_buckets(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, step_ns: int
    ) -> list[tuple[Any, list[Bucket]]]:
        """Per series, every non-empty bucket; buckets start at multiples of step since the epoch."""
        ...

    def aggregate(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        """One value (see AGGREGATIONS) over every matching series; None when there is no point."""
        ...

    def list_series(
        self, from_ns: int, to_ns: int, *, name: str | None, offset: int, limit: int
    ) -> tuple[int, list[Any]]:
        """(total, one page) of the series with a point in range, ordered by name then labels."""
        ...


@runtime_checkable
class LogQuery(Protocol):
    def search(
        self, query: Node | None, *, level: str | None = None, service: str | None = None,
        from_ns: int, to_ns: int, limit: int,
    ) -> list[LogRecord]:
        """Records matching the parsed query (airisd.logquery) and filters, newest first."""
        ...

    def count(self, query: Node | None, from_ns: int, to_ns: int) -> int:
        """How many records match (the alert engine's log rules)."""
        ...

    def page(
        self, *, page: int, size: int, sort_desc: bool = True, level: str | None = None,
        service: str | None = None, from_ns: int, to_ns: int,
    ) -> tuple[int, list[LogRecord]]:
        """(total, page ``page`` of ``size``) ordered by time."""
        ...


@runtime_checkable
class TraceQuery(Protocol):
    def get_trace(self, trace_id: str) -> list[Span]: ...

    def get_traces(self, trace_ids: Iterable[str]) -> dict[str, list[Span]]: ...

    def find_trace_ids(
        self, *, service: str | None = None, operation: str | None = None, from_ns: int | None = None,
        to_ns: int | None = None, min_duration_ns: int | None = None, max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (), limit: int = 20,
    ) -> list[str]:
        """Ids of traces with a span matching every condition, newest matching span first."""
        ...

    def search(
        self, *, service: str | None = None, operation: str | None = None, from_ns: int | None = None,
        to_ns: int | None = None, min_duration_ns: int | None = None, max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (), limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Trace summaries (the seed's /traces/search items) for find_trace_ids' answer."""
        ...

    def services(self) -> list[str]: ...

    def operations(self, service: str, *, span_kind: str | None = None) -> list[str]: ...

    def operation_kinds(self, service: str) -> list[tuple[str, str]]: ...


QUERY_PROTOCOLS: dict[str, type] = {"metrics": MetricQuery, "logs": LogQuery, "traces": TraceQuery}
