"""The alert engine's metric and log sources: in process over the real SQLite stores, and over
HTTP against a mock of the metrics and log roles' query APIs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from airisd_plugins.outputs.sqlite.metrics_store import MetricStore
from hypothesis import given
from hypothesis import strategies as st

from airisd.alerting.inprocess import (
    AGGREGATIONS,
    HttpLogSource,
    HttpMetricSource,
    StoreLogSource,
    StoreMetricSource,
    _label_filter,
    aggregate_points,
    group_points,
)
from airisd.model import LogRecord, Point
from airisd.querysyntax import parse_label_filter
from airisd.timeparse import format_ts

S = 1_000_000_000
T0 = 1_705_314_600 * S
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
series_st = st.lists(st.lists(st.tuples(st.integers(0, 10**6), values), max_size=8), max_size=5)


def oracle(series: list[list[tuple[int, float]]], aggregation: str) -> float | None:
    pts = sorted((p for s in series for p in s), key=lambda p: p[0])
    vals = [v for _, v in pts]
    if not vals:
        return None
    return {
        "avg": sum(vals) / len(vals),
        "min": min(vals),
        "max": max(vals),
        "sum": sum(vals),
        "count": float(len(vals)),
        "last": vals[-1],
    }[aggregation]


@given(series_st, st.sampled_from(AGGREGATIONS))
def test_aggregate_points_matches_a_brute_force_oracle(
    series: list[list[tuple[int, float]]], agg: str
) -> None:
    got, want = aggregate_points(series, agg), oracle(series, agg)
    if want is None:
        assert got is None
    elif agg == "last":  # ties in time: any of the tied values is a correct "last"
        latest = max(ts for s in series for ts, _ in s)
        assert got in [v for s in series for ts, v in s if ts == latest]
    else:
        assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", ""]), st.lists(st.tuples(st.integers(0, 99), values), max_size=4)
        ),
        max_size=6,
    )
)
def test_group_points_splits_by_label(rows: list[tuple[str, list[tuple[int, float]]]]) -> None:
    labelled = [({"host": h} if h else {}, pts) for h, pts in rows]
    got = dict((g["host"], v) for g, v in group_points(labelled, ["host"], "count"))
    want: dict[str, float] = {}
    for h, pts in rows:
        if pts:
            want[h] = want.get(h, 0.0) + len(pts)
    assert got == want


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
            lambda v: v.strip() == v
        ),
        max_size=4,
    )
)
def test_label_filter_round_trips_through_the_metrics_api_parser(labels: dict[str, str]) -> None:
    assert parse_label_filter(_label_filter(labels)) == labels


@pytest.mark.anyio
async def test_store_sources_use_a_half_open_window(tmp_path: Path) -> None:
    metrics = MetricStore(tmp_path)
    metrics.open()
    metrics.write(
        [
            Point(name="cpu.usage", value=float(v), ts=T0 + i * S, labels={"host": h})
            for i, (v, h) in enumerate([(10, "a"), (20, "b"), (90, "a")])
        ]
    )
    src = StoreMetricSource(metrics)
    assert await src.aggregate("cpu.usage", {}, T0, T0 + 2 * S, "avg") == 15.0  # ts == to is out
    assert await src.aggregate("cpu.usage", {"host": "a"}, T0, T0 + 3 * S, "max") == 90.0
    assert await src.aggregate("cpu.usage", {"host": "zz"}, T0, T0 + 3 * S, "avg") is None
    grouped = await src.aggregate_by("cpu.usage", {}, T0, T0 + 3 * S, "sum", ["host"])
    assert sorted((g["host"], v) for g, v in grouped) == [("a", 100.0), ("b", 20.0)]
    metrics.close()
    logs = LogStore(tmp_path)
    logs.open()
    logs.write(
        [
            LogRecord(ts=T0 + i * S, level=lvl, message=msg, service="api")
            for i, (lvl, msg) in enumerate(
                [
                    ("ERROR", "database down"),
                    ("INFO", "database up"),
                    ("ERROR", "database down"),
                    ("ERROR", "disk"),
                ]
            )
        ]
    )
    lsrc = StoreLogSource(logs)
    assert await lsrc.count("level:ERROR AND message:database", T0, T0 + 4 * S) == 2
    assert await lsrc.count("level:ERROR AND message:database", T0, T0 + 2 * S) == 1
    assert await lsrc.count("", T0, T0 + 4 * S) == 4
    logs.close()


def mock_roles(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer k1":
            return httpx.Response(
                401, json={"success": False, "error": {"code": "UNAUTHORIZED", "message": "no"}}
            )
        if request.url.path == "/metrics/query":
            series = [
                {
                    "labels": {"host": "a"},
                    "points": [
                        {"timestamp": format_ts(T0), "value": 10.0},
                        {"timestamp": format_ts(T0 + 2 * S), "value": 30.0},
                    ],
                },
                {"labels": {"host": "b"}, "points": [{"timestamp": format_ts(T0 + S), "value": 50.0}]},
            ]
            return httpx.Response(200, content=orjson.dumps({"success": True, "data": {"series": series}}))
        if request.url.path == "/logs/search":
            return httpx.Response(200, json={"success": True, "data": {"count": 7, "items": []}})
        return httpx.Response(404, json={"success": False, "error": {"code": "NOT_FOUND", "message": "nope"}})

    return httpx.MockTransport(handler)


@pytest.mark.anyio
async def test_http_sources_query_the_roles_apis_with_the_api_key() -> None:
    seen: list[httpx.Request] = []
    metrics = HttpMetricSource("http://m:8001/", api_key="k1", transport=mock_roles(seen))
    assert await metrics.aggregate("cpu.usage", {"host": "a,b"}, T0, T0 + 10 * S, "avg") == 30.0
    assert await metrics.aggregate("cpu.usage", {}, T0, T0 + 10 * S, "last") == 30.0  # newest by time
    by = await metrics.aggregate_by("cpu.usage", {}, T0, T0 + 10 * S, "max", ["host"])
    assert sorted((g["host"], v) for g, v in by) == [("a", 30.0), ("b", 50.0)]
    params: Any = seen[0].url.params
    assert params["name"] == "cpu.usage" and params["labels"] == "host:a\\,b"
    logs = HttpLogSource("http://l:8002", api_key="k1", transport=mock_roles(seen))
    assert await logs.count("level:ERROR", T0, T0 + 60 * S) == 7
    assert seen[-1].url.params["q"] == "level:ERROR"
    wrong = HttpLogSource("http://l:8002", api_key="bad", transport=mock_roles(seen))
    with pytest.raises(RuntimeError, match="HTTP 401"):
        await wrong.count("x", T0, T0 + S)
    for src in (metrics, logs, wrong):
        await src.aclose()
