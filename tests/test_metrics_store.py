"""The SQLite metric store checked against a brute-force oracle on random data.

Random points over a few series are written through MetricStore in random group-commit batches;
every query (raw points, epoch-aligned buckets, aggregates, series listing, retention) is compared
with a plain-Python computation over the same points, where a second write of the same series and
timestamp replaces the first.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from airisd_plugins.outputs.sqlite.metrics_store import AGGREGATIONS, MetricStore, series_key
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.model import Point
from airisd.timeparse import NS_PER_MS, NS_PER_S
from tests.conftest import FAST_TMP

T0 = 1_705_314_600 * NS_PER_S
SPAN_STEPS = 2400  # points fall on a 250 ms grid over 10 minutes, so timestamps collide
GRID = 250 * NS_PER_MS
NAMES = ["cpu.usage", "memory.usage"]
LABEL_SETS: list[dict[str, str]] = [
    {},
    {"host": "web-01"},
    {"host": "web-02"},
    {"host": "web-01", "region": "us-east-1"},
    {"host": "web-02", "region": "eu-west-1", "mount": "/"},
]
MATCHERS: list[dict[str, str]] = [
    {},
    {"host": "web-01"},
    {"host": "web-02"},
    {"region": "us-east-1"},
    {"host": "web-01", "region": "us-east-1"},
    {"host": "web-02", "region": "us-east-1"},
    {"host": "nope"},
    {"mount": "/"},
]

timestamps = st.integers(min_value=0, max_value=SPAN_STEPS).map(lambda k: T0 + k * GRID) | st.integers(
    min_value=T0 - NS_PER_S, max_value=T0 + SPAN_STEPS * GRID
)
values = st.integers(min_value=-10_000, max_value=10_000).map(lambda v: v / 4) | st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False
)
points = st.builds(
    Point,
    name=st.sampled_from(NAMES),
    value=values,
    ts=timestamps,
    labels=st.sampled_from(LABEL_SETS).map(dict),
)
batches = st.lists(st.lists(points, min_size=1, max_size=25), min_size=1, max_size=6)
ranges = st.tuples(timestamps, timestamps).map(sorted)
SeriesKey = tuple[str, str]  # name, labels JSON


def skey(name: str, labels: dict[str, str]) -> SeriesKey:
    return name, orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class Oracle:
    """What the store should hold: series -> {ts: value}, last write wins."""

    data: dict[SeriesKey, dict[int, float]] = field(default_factory=dict)

    def write(self, batch: list[Point]) -> None:
        for p in batch:
            self.data.setdefault(skey(p.name, p.labels), {})[p.ts] = p.value

    def series(self, name: str, matchers: dict[str, str]) -> list[SeriesKey]:
        return [
            k
            for k in self.data
            if k[0] == name and all(orjson.loads(k[1]).get(m) == v for m, v in matchers.items())
        ]

    def points(self, key: SeriesKey, lo: int, hi: int) -> list[tuple[int, float]]:
        return sorted((ts, v) for ts, v in self.data[key].items() if lo <= ts <= hi)

    def buckets(
        self, key: SeriesKey, lo: int, hi: int, step: int
    ) -> list[tuple[int, float, float, float, float, int]]:
        groups: dict[int, list[float]] = {}
        for ts, v in self.points(key, lo, hi):
            groups.setdefault(ts - ts % step, []).append(v)
        return [
            (b, sum(vs) / len(vs), min(vs), max(vs), sum(vs), len(vs)) for b, vs in sorted(groups.items())
        ]

    def delete_before(self, cutoff: int) -> int:
        n = 0
        for pts in self.data.values():
            old = [ts for ts in pts if ts < cutoff]
            n += len(old)
            for ts in old:
                del pts[ts]
        return n


@contextmanager
def fresh_store() -> Iterator[MetricStore]:
    with tempfile.TemporaryDirectory(prefix="airisd-store-", dir=FAST_TMP) as d:
        store = MetricStore(Path(d))
        store.open()
        try:
            yield store
        finally:
            store.close()


def load(store: MetricStore, written: list[list[Point]], *, group: int = 2) -> Oracle:
    """Write the batches, ``group`` of them per transaction (group commit), and mirror them."""
    oracle = Oracle()
    for i in range(0, len(written), group):
        chunk = written[i : i + group]
        store.write_batches([list(b) for b in chunk])
        for b in chunk:
            oracle.write(b)
    return oracle


def key_of(series: object) -> SeriesKey:
    return skey(series.name, series.labels)  # type: ignore[attr-defined]


# -- oracle tests ------------------------------------------------------------------------------------


@settings(max_examples=80)
@given(
    batches,
    st.sampled_from(NAMES),
    st.sampled_from(MATCHERS),
    ranges,
    st.integers(min_value=1, max_value=400),
)
def test_raw_points_match_the_oracle(
    written: list[list[Point]], name: str, matchers: dict[str, str], rng: list[int], limit: int
) -> None:
    lo, hi = rng
    with fresh_store() as store:
        oracle = load(store, written)
        expected = {k: oracle.points(k, lo, hi) for k in oracle.series(name, matchers)}
        expected = {k: v for k, v in expected.items() if v}
        total = sum(len(v) for v in expected.values())

        got, truncated = store.query_points(name, matchers, lo, hi, 10**9)
        assert {key_of(s): pts for s, pts in got} == expected
        assert truncated is False
        assert all(s.name == name for s, _ in got)

        got, truncated = store.query_points(name, matchers, lo, hi, limit)
        assert sum(len(pts) for _, pts in got) == min(limit, total)
        assert truncated == (total > limit)
        for s, pts in got:
            assert pts and pts == expected[key_of(s)][: len(pts)]  # oldest first, a prefix when cut


@settings(max_examples=80)
@given(
    batches,
    st.sampled_from(NAMES),
    st.sampled_from(MATCHERS),
    ranges,
    st.integers(min_value=1, max_value=120),
)
def test_buckets_match_the_oracle(
    written: list[list[Point]], name: str, matchers: dict[str, str], rng: list[int], step_secs: int
) -> None:
    lo, hi = rng
    step = step_secs * NS_PER_S
    with fresh_store() as store:
        oracle = load(store, written, group=3)
        expected = {k: oracle.buckets(k, lo, hi, step) for k in oracle.series(name, matchers)}
        expected = {k: v for k, v in expected.items() if v}
        got = {key_of(s): rows for s, rows in store.query_buckets(name, matchers, lo, hi, step)}
        assert got.keys() == expected.keys()
        for k, rows in got.items():
            want = expected[k]
            assert [r[0] for r in rows] == [w[0] for w in want]  # epoch-aligned starts
            assert all(r[0] % step == 0 for r in rows)
            for r, w in zip(rows, want, strict=True):
                assert r[5] == w[5]  # count
                assert (r[2], r[3]) == (w[2], w[3])  # min, max: exact
                assert r[1] == pytest.approx(w[1], rel=1e-9, abs=1e-9)  # avg
                assert r[4] == pytest.approx(w[4], rel=1e-9, abs=1e-6)  # sum


@settings(max_examples=80)
@given(batches, st.sampled_from(NAMES), st.sampled_from(MATCHERS), ranges, st.sampled_from(AGGREGATIONS))
def test_aggregates_match_the_oracle(
    written: list[list[Point]], name: str, matchers: dict[str, str], rng: list[int], aggregation: str
) -> None:
    lo, hi = rng
    with fresh_store() as store:
        oracle = load(store, written)
        pts = [p for k in oracle.series(name, matchers) for p in oracle.points(k, lo, hi)]
        got = store.aggregate(name, matchers, lo, hi, aggregation)
        if not pts:
            assert got is None
            return
        vals = [v for _, v in pts]
        if aggregation == "last":
            newest = max(ts for ts, _ in pts)
            assert got in {v for ts, v in pts if ts == newest}  # two series may share the newest instant
            return
        want = {
            "avg": sum(vals) / len(vals),
            "min": min(vals),
            "max": max(vals),
            "sum": sum(vals),
            "count": float(len(vals)),
        }[aggregation]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


@settings(max_examples=80)
@given(
    batches,
    ranges,
    st.none() | st.sampled_from([*NAMES, "absent"]),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=1, max_value=12),
)
def test_series_listing_matches_the_oracle(
    written: list[list[Point]], rng: list[int], name: str | None, offset: int, limit: int
) -> None:
    lo, hi = rng
    with fresh_store() as store:
        oracle = load(store, written)
        seen = sorted(
            k
            for k, pts in oracle.data.items()
            if any(lo <= ts <= hi for ts in pts) and k[0] == (name or k[0])
        )
        total, page = store.list_series(lo, hi, name=name, offset=offset, limit=limit)
        assert total == len(seen)
        assert [key_of(s) for s in page] == seen[offset : offset + limit]


@settings(max_examples=40)
@given(batches, timestamps)
def test_retention_deletes_exactly_what_is_older(written: list[list[Point]], cutoff: int) -> None:
    with fresh_store() as store:
        oracle = load(store, written)
        assert store.delete_before(cutoff) == oracle.delete_before(cutoff)
        assert store.count_points() == sum(len(p) for p in oracle.data.values())
        for name in NAMES:
            got, _ = store.query_points(name, {}, 0, 2**62, 10**9)
            want = {k: oracle.points(k, 0, 2**62) for k in oracle.series(name, {})}
            assert {key_of(s): pts for s, pts in got} == {k: v for k, v in want.items() if v}
        assert store.delete_before(cutoff) == 0  # idempotent


@settings(max_examples=20)
@given(batches)
def test_data_survives_reopening(written: list[list[Point]]) -> None:
    with tempfile.TemporaryDirectory(prefix="airisd-store-", dir=FAST_TMP) as d:
        store = MetricStore(Path(d))
        store.open()
        oracle = load(store, written)
        store.close()
        again = MetricStore(Path(d))
        again.open()
        try:
            again.write_batches([written[0]])  # the series cache is rebuilt from disk: no duplicate series
            oracle.write(written[0])
            for name in NAMES:
                got, _ = again.query_points(name, {}, 0, 2**62, 10**9)
                want = {k: oracle.points(k, 0, 2**62) for k in oracle.series(name, {})}
                assert {key_of(s): pts for s, pts in got} == want
        finally:
            again.close()


# -- examples ----------------------------------------------------------------------------------------


def test_last_write_wins_within_and_across_transactions(tmp_path: Path) -> None:
    store = MetricStore(tmp_path)
    store.open()
    p = {"name": "cpu.usage", "ts": T0, "labels": {"host": "a"}}
    store.write_batches([[Point(value=1.0, **p), Point(value=2.0, **p)]])  # type: ignore[arg-type]
    store.write_batches([[Point(value=3.0, **p)], [Point(value=4.0, **p)]])  # type: ignore[arg-type]
    got, _ = store.query_points("cpu.usage", {}, T0, T0, 10)
    assert [pts for _, pts in got] == [[(T0, 4.0)]]
    store.close()


def test_labels_identify_series_regardless_of_order(tmp_path: Path) -> None:
    assert series_key("m", {"a": "1", "b": "2"}) == series_key("m", {"b": "2", "a": "1"})
    assert series_key("m", {}) == "m"
    store = MetricStore(tmp_path)
    store.open()
    store.write_batches([[Point(name="m", value=1, ts=T0, labels={"a": "1", "b": "2"})]])
    store.write_batches([[Point(name="m", value=2, ts=T0 + 1, labels={"b": "2", "a": "1"})]])
    total, page = store.list_series(0, 2**62, name=None, offset=0, limit=10)
    assert total == 1 and page[0].labels == {"a": "1", "b": "2"}
    store.close()


def test_failed_transaction_leaves_nothing_and_store_keeps_working(tmp_path: Path) -> None:
    """NaN becomes NULL in SQLite and violates NOT NULL: the whole group commit rolls back, and the
    series created inside it must not linger in the writer's cache."""
    store = MetricStore(tmp_path)
    store.open()
    good = Point(name="new.series", value=1.0, ts=T0, labels={"k": "v"})
    with pytest.raises(sqlite3.IntegrityError):
        store.write_batches([[good], [Point(name="x", value=float("nan"), ts=T0)]])
    assert store.count_points() == 0
    assert store.list_series(0, 2**62, name=None, offset=0, limit=10) == (0, [])
    store.write_batches([[good]])
    got, _ = store.query_points("new.series", {"k": "v"}, T0, T0, 10)
    assert [(s.labels, pts) for s, pts in got] == [({"k": "v"}, [(T0, 1.0)])]
    store.close()


def test_unknown_aggregation_is_refused(tmp_path: Path) -> None:
    store = MetricStore(tmp_path)
    store.open()
    with pytest.raises(ValueError, match="median"):
        store.aggregate("m", {}, 0, 1, "median")
    assert store.aggregate("m", {}, 0, 1, "avg") is None
    store.close()


def test_close_is_safe_twice(tmp_path: Path) -> None:
    store = MetricStore(tmp_path)
    store.close()
    store.open()
    store.close()
    store.close()
    assert (tmp_path / "metrics.db").exists()


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.dictionaries(
    st.sampled_from(["h", "k"]), st.sampled_from(["1", "2"]), max_size=2)), max_size=30))
def test_prepare_gives_the_same_rows_whether_points_share_label_dicts_or_not(
        spec: list[tuple[str, int, dict[str, str]]]) -> None:
    """prepare() finds a point's series by (name, identity of its labels dict) within a call; points
    sharing a dict, and equal dicts that are not shared, must come out alike."""
    shared: dict[int, dict[str, str]] = {}
    with_shared = [Point(name=n, value=float(i), ts=i, labels=shared.setdefault(k, labels))
                   for i, (n, k, labels) in enumerate(spec)]
    with_copies = [Point(name=p.name, value=p.value, ts=p.ts, labels=dict(p.labels)) for p in with_shared]
    assert MetricStore(Path("/nonexistent")).prepare(with_shared) == MetricStore(Path("/nonexistent")).prepare(
        with_copies)
