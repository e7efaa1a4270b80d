"""The engine's MetricSource / LogSource, in process over the embedded stores or over HTTP.

In process (``--role all``, or whenever ``[alerting] metrics_url`` / ``logs_url`` are empty): the
SQLite stores' sync calls run in a worker thread, so a slow query never blocks the event loop.

Over HTTP (the metrics and log roles run in other processes): ``GET {metrics_url}/metrics/query``
(raw points, aggregated here) and ``GET {logs_url}/logs/search`` (matches counted here) with
``Authorization: Bearer {alerting.api_key}`` — an API key with scope "read"
(``airisd token create --role reader``), normally from AIRISD_ALERT_API_KEY.

Time windows: the engine asks for from_ns <= ts < to_ns; the stores take inclusive bounds, so
``to_ns - 1`` is passed on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import httpx

from airisd import logquery
from airisd.logquery import Node
from airisd.timeparse import format_ts, parse_timestamp

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last")
MAX_POINTS = 100_000  # the metrics role's default http.max_result_points
MAX_LOG_MATCHES = 10_000  # the log role's default page limit for /logs/search


def aggregate_points(series: Iterable[list[tuple[int, float]]], aggregation: str) -> float | None:
    """``aggregation`` over every point of every series together; None when there is none."""
    count = 0
    total = 0.0
    lo = float("inf")
    hi = float("-inf")
    last_ts, last = -1, 0.0
    for points in series:
        for ts, value in points:
            count += 1
            total += value
            lo = min(lo, value)
            hi = max(hi, value)
            if ts >= last_ts:
                last_ts, last = ts, value
    if count == 0:
        return None
    return {"avg": total / count, "min": lo, "max": hi, "sum": total, "count": float(count), "last": last}[
        aggregation
    ]


def group_points(
    rows: Iterable[tuple[dict[str, str], list[tuple[int, float]]]], group_by: list[str], aggregation: str
) -> list[tuple[dict[str, str], float]]:
    """One value per distinct ``group_by`` labels (a missing label counts as "")."""
    groups: dict[tuple[str, ...], list[list[tuple[int, float]]]] = {}
    for labels, points in rows:
        groups.setdefault(tuple(labels.get(k, "") for k in group_by), []).append(points)
    out = []
    for key, series in groups.items():
        value = aggregate_points(series, aggregation)
        if value is not None:
            out.append((dict(zip(group_by, key, strict=True)), value))
    return out


class _QueryCache:
    """Parsed log queries by text: a rule's query is parsed once, not every round."""

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}

    def node(self, query: str) -> Node:
        node = self._nodes.get(query)
        if node is None:
            if len(self._nodes) > 10_000:
                self._nodes.clear()
            node = self._nodes[query] = logquery.parse(query, field="log_query")
        return node


class StoreMetricSource:
    """Over the embedded MetricStore (plugins/outputs/sqlite/metrics_store.py)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def aggregate(
        self, metric: str, labels: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        value = await anyio.to_thread.run_sync(
            self.store.aggregate, metric, labels, from_ns, to_ns - 1, aggregation
        )
        return None if value is None else float(value)

    async def aggregate_by(
        self,
        metric: str,
        labels: dict[str, str],
        from_ns: int,
        to_ns: int,
        aggregation: str,
        group_by: list[str],
    ) -> list[tuple[dict[str, str], float]]:
        rows, _ = await anyio.to_thread.run_sync(
            self.store.query_points, metric, labels, from_ns, to_ns - 1, MAX_POINTS
        )
        return group_points(((s.labels, pts) for s, pts in rows), group_by, aggregation)


class StoreLogSource:
    """Over the embedded LogStore (plugins/outputs/sqlite/logs_store.py)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._cache = _QueryCache()

    async def count(self, query: str, from_ns: int, to_ns: int) -> int:
        node = self._cache.node(query) if query.strip() else None
        return int(await anyio.to_thread.run_sync(self.store.count, node, from_ns, to_ns - 1))


def _label_filter(labels: dict[str, str]) -> str:
    """The metrics API's ``labels=k:v,k2:v2`` with commas and backslashes escaped."""

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(",", "\\,")

    return ",".join(f"{k}:{esc(v)}" for k, v in sorted(labels.items()))


class _HttpSource:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        timeout_secs: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_secs, transport=transport
        )
        self.resolve = resolve  # service discovery (Consul): asked for a base URL on every query

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        url = (await self.resolve()).rstrip("/") + path if self.resolve is not None else path
        resp = await self.client.get(url, params=params)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("success"):
            err = body.get("error", {}) if isinstance(body, dict) else {}
            message = err.get("message") if isinstance(err, dict) else None
            raise RuntimeError(
                f"{self.client.base_url}{path}: HTTP {resp.status_code}: {message or resp.text[:200]}"
            )
        return body["data"]

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpMetricSource(_HttpSource):
    """Over the metrics role's ``GET /metrics/query`` (raw points, aggregated here)."""

    async def _series(
        self, metric: str, labels: dict[str, str], from_ns: int, to_ns: int
    ) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        params = {
            "name": metric,
            "from": format_ts(from_ns),
            "to": format_ts(max(from_ns, to_ns - 1_000_000)),
            "limit": str(MAX_POINTS),
        }
        if labels:
            params["labels"] = _label_filter(labels)
        data = await self._get("/metrics/query", params)
        return [
            (
                s.get("labels") or {},
                [(parse_timestamp(p["timestamp"]), float(p["value"])) for p in s.get("points") or []],
            )
            for s in data.get("series") or []
        ]

    async def aggregate(
        self, metric: str, labels: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        rows = await self._series(metric, labels, from_ns, to_ns)
        return aggregate_points((pts for _, pts in rows), aggregation)

    async def aggregate_by(
        self,
        metric: str,
        labels: dict[str, str],
        from_ns: int,
        to_ns: int,
        aggregation: str,
        group_by: list[str],
    ) -> list[tuple[dict[str, str], float]]:
        rows = await self._series(metric, labels, from_ns, to_ns)
        return group_points(rows, group_by, aggregation)


class HttpLogSource(_HttpSource):
    """Over the log role's ``GET /logs/search``; counts saturate at MAX_LOG_MATCHES."""

    async def count(self, query: str, from_ns: int, to_ns: int) -> int:
        params = {
            "q": query,
            "from": format_ts(from_ns),
            "to": format_ts(max(from_ns, to_ns - 1_000_000)),
            "limit": str(MAX_LOG_MATCHES),
        }
        data = await self._get("/logs/search", params)
        return int(data.get("count", 0))
