"""The metrics role's queries answered from ClickHouse, with the SQLite MetricStore's methods and
return shapes (plugins/outputs/sqlite/metrics_store.py), so the role cannot tell them apart.

Methods are synchronous: the roles call them from worker threads. Differences from SQLite, by
design: series come ordered by their 64-bit id rather than by first appearance (``query_points``
fills its limit in that order), and reads use FINAL so a re-sent sample counts once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
from airisd_plugins.outputs.clickhouse.writer import classify

from airisd.errors import PermanentError, TransientError

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last")
TS = "toUnixTimestamp64Nano(timestamp)"


@dataclass(frozen=True)
class Series:
    id: int
    name: str
    labels: dict[str, str]


class ClickHouseMetricStore:
    """Reads the ``metrics`` table through a clickhouse-connect client (thread-safe, no session)."""

    def __init__(self, client_factory: Any, database: str) -> None:
        self._client_factory = client_factory  # () -> client; the output owns and closes it
        self.table = f"`{database}`.metrics"

    @property
    def client(self) -> Any:
        return self._client_factory()

    @staticmethod
    def _where(name: str | None, matchers: dict[str, str], from_ns: int | None = None,
               to_ns: int | None = None) -> tuple[str, dict[str, Any]]:
        """A WHERE clause with every user value bound as a {name:Type} parameter, never inlined."""
        params: dict[str, Any] = {}
        where: list[str] = []
        if name is not None:
            params["name"] = name
            where.append("name = {name:String}")
        if from_ns is not None and to_ns is not None:
            params["from"], params["to"] = from_ns, to_ns
            where += ["timestamp >= fromUnixTimestamp64Nano({from:Int64}, 'UTC')",
                      "timestamp <= fromUnixTimestamp64Nano({to:Int64}, 'UTC')"]
        for i, (k, v) in enumerate(sorted(matchers.items())):
            params[f"k{i}"], params[f"v{i}"] = k, v
            where.append(f"mapContains(labels, {{k{i}:String}}) AND labels[{{k{i}:String}}] = {{v{i}:String}}")
        return " AND ".join(where) or "1", params

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        try:
            return self.client.query(sql, parameters=params).result_rows
        except (TransientError, PermanentError):
            raise
        except Exception as exc:  # unreachable or failing: TransientError, which the roles answer with 503
            raise classify(exc, "query") from exc

    # -- the SQLite store's interface ---------------------------------------------------------
    def find_series(self, conn: Any, name: str, matchers: dict[str, str]) -> list[Series]:
        """Series of ``name`` whose labels hold every matcher (``conn`` is unused: kept for the
        SQLite store's signature)."""
        where, params = self._where(name, matchers)
        rows = self._rows(f"SELECT series, any(labels) FROM {self.table} WHERE {where} GROUP BY series ORDER BY series",
                          params)
        return [Series(int(sid), name, dict(labels)) for sid, labels in rows]

    def query_points(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, limit: int
    ) -> tuple[list[tuple[Series, list[tuple[int, float]]]], bool]:
        """Raw points per series in [from, to], oldest first; the bool says whether limit cut it."""
        where, params = self._where(name, matchers, from_ns, to_ns)
        params["limit"] = limit + 1
        rows = self._rows(f"SELECT series, labels, {TS}, value FROM {self.table} FINAL WHERE {where} "
                          "ORDER BY series, timestamp LIMIT {limit:UInt64}", params)
        truncated = len(rows) > limit
        out: list[tuple[Series, list[tuple[int, float]]]] = []
        current: int | None = None
        for sid, labels, ts, value in rows[:limit]:
            if sid != current:
                out.append((Series(int(sid), name, dict(labels)), []))
                current = sid
            out[-1][1].append((int(ts), float(value)))
        return out, truncated

    def query_buckets(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, step_ns: int
    ) -> list[tuple[Series, list[tuple[int, float, float, float, float, int]]]]:
        """Per series: (bucket start, avg, min, max, sum, count) for every non-empty bucket, buckets
        aligned to multiples of step since the epoch."""
        where, params = self._where(name, matchers, from_ns, to_ns)
        params["step"] = step_ns
        rows = self._rows(
            f"SELECT series, any(labels), {TS} - ({TS} % {{step:Int64}}) AS b, avg(value), min(value), max(value), "
            f"sum(value), count() FROM {self.table} FINAL WHERE {where} GROUP BY series, b ORDER BY series, b", params)
        out: list[tuple[Series, list[tuple[int, float, float, float, float, int]]]] = []
        current: int | None = None
        for sid, labels, b, avg, mn, mx, sm, n in rows:
            if sid != current:
                out.append((Series(int(sid), name, dict(labels)), []))
                current = sid
            out[-1][1].append((int(b), float(avg), float(mn), float(mx), float(sm), int(n)))
        return out

    def aggregate(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        """One value over every matching series in [from, to]; None when there are no points."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        where, params = self._where(name, matchers, from_ns, to_ns)
        fn = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)",
              "count": "count()", "last": "argMax(value, timestamp)"}[aggregation]
        rows = self._rows(f"SELECT {fn}, count() FROM {self.table} FINAL WHERE {where}", params)
        if not rows or rows[0][1] == 0:
            return None
        value = float(rows[0][0])
        return value if math.isfinite(value) else None

    def list_series(
        self, from_ns: int, to_ns: int, *, name: str | None, offset: int, limit: int
    ) -> tuple[int, list[Series]]:
        """Series that have at least one point in [from, to], ordered by name then labels (labels
        as sorted-key JSON, the SQLite store's order)."""
        where, params = self._where(name or None, {}, from_ns, to_ns)
        rows = self._rows(f"SELECT name, series, any(labels) FROM {self.table} WHERE {where} GROUP BY name, series",
                          params)
        keyed = sorted(((n, orjson.dumps(dict(lab), option=orjson.OPT_SORT_KEYS).decode(), int(sid), dict(lab))
                        for n, sid, lab in rows), key=lambda r: (r[0], r[1]))
        page = [Series(sid, n, lab) for n, _, sid, lab in keyed[offset: offset + limit]]
        return len(keyed), page

    def count_points(self) -> int:
        return int(self._rows(f"SELECT count() FROM {self.table} FINAL", {})[0][0])
