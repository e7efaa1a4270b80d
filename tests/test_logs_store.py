"""The SQLite log store. The key test: for random records and random queries, search() returns
exactly what a brute-force filter with logquery.matches returns, newest first."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airisd.logquery import And, Kind, Match, Node, Not, Or, matches, parse
from airisd.model import LogRecord

ALL = (0, 2**63 - 1)

# -- a small world, so that random queries hit random records ---------------------------------

WORDS = ["database", "Database", "error", "ERROR", "connection", "failed", "user_12345", "db.query",
         "Database.connect()", "timeout", "데이터베이스", "a-b", "x.y.z", "retry.", "Äpi", "äpi", "data",
         "user-api"]  # fmt: skip
SEPARATORS = [" ", " ", ", ", ". ", "/", "-", ":", "\n  at "]
LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "UNKNOWN"]
SERVICES = ["user-api", "USER-API", "billing", "", "서비스", "Äpi"]
IDS = ["", "abc123", "ABC123", "req_67890", "user_12345"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), max_size=6))
    out = ""
    for i, w in enumerate(words):
        out += (draw(st.sampled_from(SEPARATORS)) if i else "") + w
    return out


attr_values = st.one_of(
    st.sampled_from(
        [
            500,
            200,
            "500",
            "OK",
            "ok",
            0.5,
            500.0,
            True,
            False,
            None,
            [1, 2],
            {"a": 1},
            "",
            -9,
            "KR-Seoul",
            "Äpi",
            float("inf"),
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
)


label_keys = st.sampled_from(["component", "env", "a.b"])
label_values = st.sampled_from(["database", "DATABASE", "prod", "", "db.x"])
attr_keys = st.sampled_from(["http.status", "flag", "ratio", "region"])


@st.composite
def records(draw: st.DrawFn, ts: int) -> LogRecord:
    return LogRecord(
        ts=ts,
        level=draw(st.sampled_from(LEVELS)),
        message=draw(texts()),
        service=draw(st.sampled_from(SERVICES)),
        trace_id=draw(st.sampled_from(IDS)),
        user_id=draw(st.sampled_from(IDS)),
        request_id=draw(st.sampled_from(IDS)),
        stack_trace=draw(st.one_of(st.just(""), texts())),
        labels=draw(st.dictionaries(label_keys, label_values, max_size=2)),
        attributes=draw(st.dictionaries(attr_keys, attr_values, max_size=3)),
    )


MINUTE = 60 * 10**9
# Nanoseconds near each other, and instants spread over three hours, so that count buckets (hours,
# minutes) are whole, partial and empty.
instants = st.one_of(
    st.integers(0, 10_000), st.integers(0, 180 * MINUTE), st.integers(0, 3).map(lambda h: h * 60 * MINUTE)
)


@st.composite
def record_sets(draw: st.DrawFn) -> list[LogRecord]:
    stamps = draw(st.lists(instants, unique=True, min_size=0, max_size=30))
    return [draw(records(ts)) for ts in stamps]


TEXT_VALUES = [
    *WORDS,
    "data",
    "db.",
    "user",
    "user_",
    "connection failed",
    "failed connection",
    "!!!",
    "a€",
    "ÄPI",
    "database.connect",
    "x.y",
    "retry",
    "error",
    "abc123",
    "req_67890",
    "A-B",
    ".",
    "-",
    "._x",
    "error user-api",
    "info billing abc123",
    "user-api abc123",
    "db.x",
]
ATTR_VALUES = ["500", "500.0", "200", "ok", "OK", "true", "FALSE", "null", "0.5", ".5", "5", "-9", ""]
FIELD_VALUES: dict[str | None, list[str]] = {
    None: TEXT_VALUES,
    "message": TEXT_VALUES,
    "stack_trace": TEXT_VALUES,
    "level": [*LEVELS, "error", "Error", "err", "warning", "unknown", "E", "FAT"],
    "service": [*SERVICES, "user-API", "BILLING", "äpi", "user", "US"],
    "trace_id": [*IDS, "abc", "AbC123"],
    "user_id": [*IDS, "USER_12345", "user_"],
    "request_id": [*IDS, "REQ_67890", "req"],
    "labels.component": ["database", "Database", "prod", "", "db.x", "db", "DB."],
    "labels.env": ["prod", "PROD", "p", ""],
    "labels.a.b": ["database", "db.x", "DB"],
    "http.status": ATTR_VALUES,
    "flag": ATTR_VALUES,
    "ratio": ATTR_VALUES,
    "region": [*ATTR_VALUES, "KR-Seoul", "kr-seoul", "KR", "Äpi", "äpi"],
    "missing": ["x", "null"],
}
FIELDS = list(FIELD_VALUES)


@st.composite
def leaves(draw: st.DrawFn) -> Match:
    field = draw(st.sampled_from(FIELDS))
    kind = draw(st.sampled_from(list(Kind)))
    value = draw(st.sampled_from(FIELD_VALUES[field]) | st.text(max_size=4))
    if kind is not Kind.PHRASE and not value:
        value = "x"
    return Match(field, value, kind)


queries = st.recursive(
    leaves(),
    lambda kids: st.one_of(
        kids.map(Not),
        st.lists(kids, min_size=2, max_size=3).map(lambda cs: And(tuple(cs))),
        st.lists(kids, min_size=2, max_size=3).map(lambda cs: Or(tuple(cs))),
    ),
    max_leaves=6,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore(tmp_path)
    s.open()
    yield s
    s.close()


def stored(r: LogRecord) -> LogRecord:
    """What the store gives back: JSON has no infinities, they come back as null."""
    attrs = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.attributes.items()}
    return msgspec.structs.replace(r, attributes=attrs)


def newest_first(recs: list[LogRecord]) -> list[LogRecord]:
    return sorted(recs, key=lambda r: r.ts, reverse=True)


# -- the oracle ------------------------------------------------------------------------------


@given(
    recs=record_sets(),
    query=st.one_of(st.none(), queries),
    level=st.sampled_from([None, None, "ERROR", "error", "warning", "Unknown"]),
    service=st.sampled_from([None, None, "user-api", "äpi"]),
    window=st.tuples(instants, instants | st.just(ALL[1])),
    limit=st.integers(1, 30),
    paging=st.tuples(st.integers(1, 6), st.integers(1, 5), st.booleans()),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_search_equals_brute_force_filter(
    recs: list[LogRecord], query: Node | None, level: str | None, service: str | None,
    window: tuple[int, int], limit: int, paging: tuple[int, int, bool],
) -> None:  # fmt: skip
    lo, hi = window
    with tempfile.TemporaryDirectory() as d:
        s = LogStore(Path(d), synchronous="OFF")  # no fsync: durability is not under test here
        s.open()
        try:
            s.write_batches([recs[: len(recs) // 2], recs[len(recs) // 2 :]])
            got = s.search(query, level=level, service=service, from_ns=lo, to_ns=hi, limit=limit)
            filters: list[Node] = [] if query is None else [query]
            if level:
                filters.append(Match("level", level))
            if service:
                filters.append(Match("service", service))
            expected = [
                r for r in newest_first(recs)
                if lo <= r.ts <= hi and all(matches(f, r) for f in filters)
            ]  # fmt: skip
            assert got == [stored(r) for r in expected[:limit]]
            assert s.count(query, lo, hi) == sum(
                1 for r in recs if lo <= r.ts <= hi and (query is None or matches(query, r))
            )
            # Pages (their totals come from the count tables), before and after retention.
            for cut in (None, (lo + hi) // 2):
                if cut is not None:
                    s.delete_before(cut)
                kept = [r for r in newest_first(recs) if lo <= r.ts <= hi and (cut is None or r.ts >= cut)
                        and all(matches(f, r) for f in filters[1 if query is not None else 0 :])]  # fmt: skip
                total, items = s.page(page=1, size=5, level=level, service=service, from_ns=lo, to_ns=hi)
                assert (total, items) == (len(kept), [stored(r) for r in kept[:5]])
                # Any page, either order: the count tables narrow the range the page is read from.
                page, size, desc = paging
                in_order = kept if desc else kept[::-1]
                total, items = s.page(page=page, size=size, sort_desc=desc, level=level, service=service,
                                      from_ns=lo, to_ns=hi)  # fmt: skip
                want = in_order[(page - 1) * size : page * size]
                assert (total, items) == (len(kept), [stored(r) for r in want]), (page, size, desc)
        finally:
            s.close()


def test_seed_examples(store: LogStore) -> None:
    seed = LogRecord(ts=1_705_314_600_000_000_000, level="ERROR", message="Database connection failed",
                     service="user-api", labels={"component": "database"}, user_id="user_12345")  # fmt: skip
    batch = [
        LogRecord(ts=seed.ts + 1, level="INFO", message="Server started", service="user-api"),
        LogRecord(ts=seed.ts + 2, level="WARN", message="High memory usage", service="user-api"),
        LogRecord(ts=seed.ts + 3, level="ERROR", message="Database error", service="user-api"),
    ]
    store.write_batches([[seed], batch])
    q = parse("database AND error")
    found = store.search(q, level="ERROR", service="user-api", from_ns=ALL[0], to_ns=ALL[1], limit=100)
    assert [r.message for r in found] == ["Database error", "Database connection failed"]
    assert store.search(None, level="ERROR", from_ns=seed.ts, to_ns=seed.ts + 2, limit=10) == [seed]
    assert store.count(parse("level:ERROR AND message:database"), *ALL) == 2
    assert store.count(parse("labels.component:database"), *ALL) == 1


# -- timestamps are unique -------------------------------------------------------------------


def test_colliding_timestamps_move_to_the_next_free_nanosecond(store: LogStore) -> None:
    t = 1_000_000
    store.write_batches([[LogRecord(ts=t, level="INFO", message=f"a{i}") for i in range(3)]])
    assert sorted(r.ts for r in store.search(None, from_ns=0, to_ns=ALL[1], limit=10)) == [t, t + 1, t + 2]
    # A late record whose nanosecond is taken, and one that lands between stored ones.
    store.write_batches([[LogRecord(ts=t + 1, level="INFO", message="late"),
                          LogRecord(ts=t - 5, level="INFO", message="older")]])  # fmt: skip
    got = store.search(None, from_ns=0, to_ns=ALL[1], limit=10)
    assert [(r.ts, r.message) for r in got][:2] == [(t + 3, "late"), (t + 2, "a2")]
    assert got[-1].ts == t - 5
    assert len({r.ts for r in got}) == 5


def test_older_batches_keep_their_stamps_unless_one_is_taken(store: LogStore) -> None:
    def write(*stamps: int) -> None:
        store.write_batches([[LogRecord(ts=t, level="INFO", message=str(t)) for t in stamps]])

    write(100, 200, 300)
    write(110, 120)  # below the newest row, in a gap: the one-seek check
    write(190, 201, 250)  # a stored row inside the batch's range, none taken: the probe
    write(205, 300)  # 300 is taken: it moves to the next free nanosecond
    got = sorted((r.ts, r.message) for r in store.search(None, from_ns=0, to_ns=ALL[1], limit=20))
    assert got == [(100, "100"), (110, "110"), (120, "120"), (190, "190"), (200, "200"), (201, "201"),
                   (205, "205"), (250, "250"), (300, "300"), (301, "300")]


def test_max_ts_survives_reopen_and_rollback(tmp_path: Path) -> None:
    s = LogStore(tmp_path)
    s.open()
    s.write_batches([[LogRecord(ts=50, level="INFO", message="x")]])
    s.close()
    s = LogStore(tmp_path)
    s.open()
    try:
        assert s._max_ts == 50
        with pytest.raises(ZeroDivisionError):
            s.write_batches([[LogRecord(ts=60, level="INFO", message="y")], 1 / 0])  # type: ignore[list-item]
        s.write_batches([[LogRecord(ts=50, level="INFO", message="z")]])
        assert [r.ts for r in s.search(None, from_ns=0, to_ns=100, limit=5)] == [51, 50]
    finally:
        s.close()


# -- paging, retention -----------------------------------------------------------------------


def test_page_totals_and_order(store: LogStore) -> None:
    recs = [LogRecord(ts=1000 + i, level="ERROR" if i % 3 == 0 else "INFO", message=f"m{i}",
                      service="a" if i % 2 else "b") for i in range(100)]  # fmt: skip
    store.write_batches([recs])
    total, items = store.page(page=1, size=10, from_ns=0, to_ns=ALL[1])
    assert total == 100 and [r.message for r in items] == [f"m{i}" for i in range(99, 89, -1)]
    total, items = store.page(
        page=2, size=10, sort_desc=False, level="error", service="B", from_ns=1010, to_ns=1090
    )
    expected = [r for r in recs if r.level == "ERROR" and r.service == "b" and 1010 <= r.ts <= 1090]
    assert total == len(expected) and items == expected[10:20]
    assert store.page(page=99, size=10, from_ns=0, to_ns=ALL[1]) == (100, [])
    with pytest.raises(ValueError):
        store.page(page=0, size=10, from_ns=0, to_ns=1)


def test_delete_before_removes_rows_and_index_entries(store: LogStore) -> None:
    recs = [
        LogRecord(ts=i, level="ERROR", message=f"database {i} user_{i % 7}", service="svc")
        for i in range(25_000)
    ]
    store.write_batches([recs])
    assert store.delete_before(20_000) == 20_000
    assert store.count(None, *ALL) == 5_000
    assert store.count(parse("database"), *ALL) == 5_000
    assert store.count(parse("user_3"), *ALL) == len([i for i in range(20_000, 25_000) if i % 7 == 3])
    assert store.delete_before(20_000) == 0
    conn = store.wconn
    conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('integrity-check', 0)")
    # The freed nanoseconds can be used again, and their words are found once.
    store.write_batches([[LogRecord(ts=5, level="INFO", message="database again")]])
    assert store.count(parse("again"), *ALL) == 1 and store.count(parse("database"), *ALL) == 5_001


def test_attributes_and_labels_round_trip(store: LogStore) -> None:
    r = LogRecord(ts=7, level="INFO", message="m", labels={"a.b": "x"},
                  attributes={"n": 1, "f": 0.25, "s": "t", "b": True, "z": None, "l": [1, "x"], "d": {"k": 2},
                              "big": 2**70})  # fmt: skip
    store.write_batches([[r]])
    (got,) = store.search(None, from_ns=0, to_ns=10, limit=1)
    assert got.labels == r.labels
    assert got.attributes == {**r.attributes, "big": str(2**70)}
    assert store.count(parse("labels.a.b:X"), 0, 10) == 1
    assert store.count(parse("d.k:2"), 0, 10) == 0  # stored nested: only flattened names are fields


# -- the query plans that the latency targets rely on ----------------------------------------


def _plan(store: LogStore, sql: str, args: tuple[object, ...]) -> str:
    return " | ".join(row[3] for row in store.wconn.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize(("level", "service"), [("ERROR", None), (None, "user-api"), ("warning", "user-api")])
def test_filtered_time_pages_walk_the_words_newest_first_without_sorting(
    store: LogStore, level: str | None, service: str | None
) -> None:
    """Level and service have no B-tree index: their words in the FTS5 index find the rows."""
    from airisd_plugins.outputs.sqlite.logs_store import _FTS_JOIN, _with_filters

    from airisd.logquery import to_sql

    f = to_sql(_with_filters(None, level, service))
    assert f.fts is not None and f.fts.count("meta : ") == (level is not None) + (service is not None)
    sql = f"SELECT l.ts {_FTS_JOIN} AND {f.where} ORDER BY logs_fts.rowid DESC LIMIT 50"
    plan = _plan(store, sql, (f.fts, 0, 1, *f.params))
    assert plan.startswith("SCAN logs_fts VIRTUAL TABLE") and "TEMP B-TREE" not in plan, plan


def test_level_and_service_pages_read_only_the_buckets_that_hold_them(store: LogStore) -> None:
    """Three hours at 10 s steps; "rare" logs one record an hour, each at ERROR; "busy" the rest, a
    tenth of them at ERROR."""
    from airisd_plugins.outputs.sqlite.logs_store import _with_filters

    from airisd.logquery import to_sql

    step = 10 * 10**9
    recs = [LogRecord(ts=i * step, level="ERROR" if i % 360 == 7 or i % 10 == 3 else "INFO", message="m",
                      service="rare" if i % 360 == 7 else "busy") for i in range(3 * 360)]  # fmt: skip
    store.write_batches([recs])
    conn = store.reader()
    try:
        f = to_sql(_with_filters(None, "error", "RARE"))
        hour = 60 * MINUTE
        # Newest first, the second of the three: only the minute that holds it.
        lo, hi, offset = store._narrow(conn, f, 0, ALL[1], 1, 1, True)
        assert (lo, hi, offset) == (hour + MINUTE, hour + 2 * MINUTE - 1, 0)
        lo, hi, offset = store._narrow(conn, f, 0, ALL[1], 0, 2, False)  # the oldest two
        assert (lo, hi, offset) == (MINUTE, hour + 2 * MINUTE - 1, 0)
        # A deep page of busy ERRORs: the offset shrinks to within the page's first minute.
        f = to_sql(_with_filters(None, "ERROR", "busy"))
        lo, hi, offset = store._narrow(conn, f, 0, ALL[1], 60, 5, True)
        assert hi - lo < 10 * MINUTE and offset < 2, (lo, hi, offset)
    finally:
        conn.close()
    total, items = store.page(page=2, size=1, level="error", service="rare", from_ns=0, to_ns=ALL[1])
    assert total == 3 and [r.ts for r in items] == [(360 + 7) * step]
    busy = [r.ts for r in sorted(recs, key=lambda r: -r.ts) if r.service == "busy" and r.level == "ERROR"]
    total, items = store.page(page=13, size=5, level="ERROR", service="busy", from_ns=0, to_ns=ALL[1])
    assert total == len(busy) and [r.ts for r in items] == busy[60:65]
    # A page counts its total, then its near edge again: the rows of a partial minute are read once.
    counted: list[tuple[int, int]] = []
    count = store._count

    def spy(conn: Any, f: Any, lo: int, hi: int) -> int:
        counted.append((lo, hi))
        return count(conn, f, lo, hi)

    store._count = spy  # type: ignore[method-assign]
    lo = 5 * step + 17  # the edges cut minutes
    total, items = store.page(page=2, size=5, level="ERROR", service="busy", from_ns=lo, to_ns=2 * hour + 17)
    assert items == [r for r in busy_records(recs) if lo <= r.ts <= 2 * hour + 17][5:10]
    assert counted and len(counted) == len(set(counted)), counted


def busy_records(recs: list[LogRecord]) -> list[LogRecord]:
    return [r for r in sorted(recs, key=lambda r: -r.ts) if r.service == "busy" and r.level == "ERROR"]


def test_opening_an_older_store_drops_its_level_and_service_indexes(tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "logs.db")
    older = ("CREATE INDEX logs_by_level ON logs(level); CREATE INDEX logs_by_service ON logs(service); "
             "CREATE INDEX logs_by_service_level ON logs(service, level);")  # fmt: skip
    conn.executescript(LogStore.SCHEMA.replace("DROP INDEX IF EXISTS", "-- ") + older)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'logs_by_%'"
                        ).fetchone()[0] == 3  # fmt: skip
    conn.close()
    s = LogStore(tmp_path)
    s.open()
    try:
        names = {r[0] for r in s.wconn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert not {n for n in names if n.startswith("logs_by_")}, names
    finally:
        s.close()


def test_text_search_walks_the_index_newest_first(store: LogStore) -> None:
    plan = _plan(store, "SELECT l.ts FROM logs_fts CROSS JOIN logs AS l ON l.ts = logs_fts.rowid "
                 "WHERE logs_fts MATCH ? AND logs_fts.rowid >= ? AND logs_fts.rowid <= ? "
                 "ORDER BY logs_fts.rowid DESC LIMIT 100", ('"database" AND "error"', 0, 1))  # fmt: skip
    assert "TEMP B-TREE" not in plan and plan.startswith("SCAN logs_fts VIRTUAL TABLE"), plan


def test_page_totals_after_retention_cuts_a_bucket(store: LogStore) -> None:
    """Retention that cuts an hour and a minute in two must leave their counts exact."""
    step = 10 * 10**9
    recs = [LogRecord(ts=i * step, level=("INFO", "ERROR")[i % 2], message="m") for i in range(900)]
    store.write_batches([recs])
    cut = 61 * MINUTE + 25 * 10**9
    assert store.delete_before(cut) == len([r for r in recs if r.ts < cut])
    ranges = [(0, ALL[1], None), (60 * MINUTE, 120 * MINUTE - 1, None), (61 * MINUTE, ALL[1], "error"),
              (0, 62 * MINUTE, "INFO"), (cut, cut + 3 * MINUTE, None)]  # fmt: skip
    for lo, hi, level in ranges:
        want = [r for r in recs if max(cut, lo) <= r.ts <= hi and level in (None, r.level, r.level.lower())]
        assert store.page(page=1, size=1, level=level, from_ns=lo, to_ns=hi)[0] == len(want), (lo, hi, level)


@given(st.lists(st.tuples(st.integers(-(2**62), 2**62), st.sampled_from(["INFO", "ERROR"]),
                          st.sampled_from(["a", "b", ""])), max_size=60))
def test_count_upserts_equal_a_count_per_table(rows: list[tuple[int, str, str]]) -> None:
    """_counts derives the hour counts from the minute ones: the same as counting each table's rows."""
    from collections import Counter

    from airisd_plugins.outputs.sqlite.logs_store import _COUNT_TABLES, _counts

    got = _counts(rows)
    for (_, size), upserts in zip(_COUNT_TABLES, got, strict=True):
        expected = Counter((ts // size, service, level) for ts, level, service in rows)
        assert sorted(upserts) == sorted((*k, n) for k, n in expected.items())
