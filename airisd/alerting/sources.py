"""What the engine needs from the metrics and log roles, as protocols.

The role wiring implements them over the embedded SQLite stores under ``--role all`` and over
the roles' HTTP query APIs when they run apart; tests implement them with dicts.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class MetricSource(Protocol):
    async def aggregate(
        self, metric: str, labels: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        """``aggregation`` (avg, min, max, sum, count, last) of the samples of ``metric`` whose
        labels include ``labels``, with from_ns <= ts < to_ns, over all matching series together.
        None when there is no sample."""
        ...


@runtime_checkable
class GroupedMetricSource(MetricSource, Protocol):
    async def aggregate_by(
        self,
        metric: str,
        labels: dict[str, str],
        from_ns: int,
        to_ns: int,
        aggregation: str,
        group_by: list[str],
    ) -> list[tuple[dict[str, str], float]]:
        """As ``aggregate``, once per distinct value of the ``group_by`` labels (a missing label
        counts as ""): [(group labels, value)], groups without samples left out. Needed only by
        rules that set ``group_by``."""
        ...


@runtime_checkable
class LogSource(Protocol):
    async def count(self, query: str, from_ns: int, to_ns: int) -> int:
        """How many log records match ``query`` (the log role's query language) with
        from_ns <= ts < to_ns."""
        ...
