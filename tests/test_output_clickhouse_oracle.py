"""Conformance: the same random points written to the SQLite store (the oracle) and to ClickHouse
(the real engine, over a socket) give the same answers to every query the metrics role and the
alert engine make."""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from airisd_plugins.outputs.clickhouse import ClickHouseOutput
from airisd_plugins.outputs.sqlite.metrics_store import MetricStore
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.model import Batch, Point, Signal
from tests.servers import ServerProcess
from tests.test_output_clickhouse import SEC, T0, chdb, make_output  # noqa: F401 - chdb is a fixture

pytestmark = pytest.mark.services

HOSTS = ["a", "b", "c"]
DCS = ["eu", "us"]
SPAN = 600 * SEC  # ten minutes of data

label_sets = st.fixed_dictionaries({"host": st.sampled_from(HOSTS)}, optional={"dc": st.sampled_from(DCS),
                                                                               "ü k": st.just("v=1,2")})
points = st.lists(
    st.builds(lambda name, labels, offset, value: (name, labels, T0 + offset, value),
              st.sampled_from(["cpu", "mem"]), label_sets, st.integers(0, SPAN),
              st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000).map(float)),
    min_size=0, max_size=80)
windows = st.tuples(st.integers(-SEC, SPAN + SEC), st.integers(0, SPAN + 2 * SEC)).map(
    lambda t: (T0 + t[0], T0 + t[0] + t[1]))


@pytest.fixture(scope="module")
def output(chdb: ServerProcess) -> Iterator[ClickHouseOutput]:  # noqa: F811
    """One started output for every example (each example writes its own metric names)."""
    out = make_output(chdb, "oracle", retention_days=0)
    anyio.run(out.start)
    try:
        yield out
    finally:
        anyio.run(out.shutdown)


def norm_points(rows: list[tuple[Any, list[tuple[int, float]]]]) -> dict[tuple, list[tuple[int, float]]]:
    return {(s.name, tuple(sorted(s.labels.items()))): list(p) for s, p in rows}


def norm_buckets(rows: list[tuple[Any, list[tuple]]]) -> dict[tuple, list[tuple]]:
    return {(s.name, tuple(sorted(s.labels.items()))): [tuple(b) for b in bs] for s, bs in rows}


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def buckets_equal(x: dict[tuple, list[tuple]], y: dict[tuple, list[tuple]]) -> bool:
    if x.keys() != y.keys():
        return False
    for k in x:
        if len(x[k]) != len(y[k]):
            return False
        for (b1, *f1, n1), (b2, *f2, n2) in zip(x[k], y[k], strict=True):
            if b1 != b2 or n1 != n2 or not all(close(p, q) for p, q in zip(f1, f2, strict=True)):
                return False
    return True


@settings(max_examples=15)
@given(data=points, window=windows, matcher_host=st.sampled_from([None, *HOSTS]), step=st.sampled_from(
    [SEC, 7 * SEC, 60 * SEC, 3600 * SEC]), small_limit=st.integers(1, 10), page=st.tuples(st.integers(0, 4),
                                                                                          st.integers(1, 5)))
def test_clickhouse_answers_as_the_sqlite_store(
    output: ClickHouseOutput, data: list[tuple[str, dict[str, str], int, float]], window: tuple[int, int],
    matcher_host: str | None, step: int, small_limit: int, page: tuple[int, int],
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"  # each example its own metric names in the shared database
    items = [Point(name=prefix + n, labels=dict(lab), ts=ts, value=v) for n, lab, ts, v in data]
    half = len(items) // 2
    with tempfile.TemporaryDirectory() as d:
        oracle = MetricStore(Path(d))
        oracle.open()
        try:
            oracle.write_batches([items[:half]])
            oracle.write_batches([items[half:]])

            anyio.run(output.write, Batch(Signal.METRICS, items[:half]))
            anyio.run(output.write, Batch(Signal.METRICS, items[half:]))
            compare(oracle, output.query_api(Signal.METRICS), prefix, window, matcher_host, step, small_limit, page)
        finally:
            oracle.close()


def compare(oracle: MetricStore, store: Any, prefix: str, window: tuple[int, int], host: str | None, step: int,
            small_limit: int, page: tuple[int, int]) -> None:
    lo, hi = window
    for name in (prefix + "cpu", prefix + "mem"):
        for matchers in ({}, {"host": host} if host else {"dc": "eu", "ü k": "v=1,2"}):
            want, want_cut = oracle.query_points(name, matchers, lo, hi, 100_000)
            got, got_cut = store.query_points(name, matchers, lo, hi, 100_000)
            assert norm_points(got) == norm_points(want) and got_cut == want_cut is False
            total = sum(len(p) for _, p in want)
            want_s, want_cut = oracle.query_points(name, matchers, lo, hi, small_limit)
            got_s, got_cut = store.query_points(name, matchers, lo, hi, small_limit)
            assert got_cut == want_cut == (total > small_limit)
            assert sum(len(p) for _, p in got_s) == sum(len(p) for _, p in want_s) == min(total, small_limit)
            assert buckets_equal(norm_buckets(store.query_buckets(name, matchers, lo, hi, step)),
                                 norm_buckets(oracle.query_buckets(name, matchers, lo, hi, step)))
            for agg in ("avg", "min", "max", "sum", "count"):
                assert close(store.aggregate(name, matchers, lo, hi, agg), oracle.aggregate(name, matchers, lo, hi,
                                                                                            agg)), agg
            latest = [(ts, v) for _, pts in want for ts, v in pts]
            if latest and sum(1 for ts, _ in latest if ts == max(latest)[0]) == 1:  # a tie has no single answer
                assert store.aggregate(name, matchers, lo, hi, "last") == oracle.aggregate(name, matchers, lo, hi,
                                                                                           "last")
            elif not latest:
                assert store.aggregate(name, matchers, lo, hi, "last") is None
    offset, limit = page
    for name_filter in (None, prefix + "cpu"):
        want_total, want_page = oracle.list_series(lo, hi, name=name_filter, offset=offset, limit=limit)
        got_total, got_page = store.list_series(lo, hi, name=name_filter, offset=offset, limit=limit)
        if name_filter is None:  # other examples' series share the database: compare ours only
            got_all = store.list_series(lo, hi, name=None, offset=0, limit=1 << 30)[1]
            ours = [(s.name, s.labels) for s in got_all if s.name.startswith(prefix)]
            want_all = [(s.name, s.labels) for s in oracle.list_series(lo, hi, name=None, offset=0,
                                                                       limit=1 << 30)[1]]
            assert ours == want_all
        else:
            assert got_total == want_total
            assert [(s.name, s.labels) for s in got_page] == [(s.name, s.labels) for s in want_page]
