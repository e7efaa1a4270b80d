"""The span store: trace lookup, idempotent re-delivery, the catalogue, retention, and search
checked against a brute-force oracle of the documented semantics on random traces."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airisd_plugins.outputs.sqlite.traces_store import TraceStore
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.model import Span, SpanLog

T0 = 1_705_314_600_000_000_000
MS = 1_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    s = TraceStore(tmp_path)
    s.open()
    yield s
    s.close()


def mk(trace: str, span: str, start_ms: int, dur_ms: int = 10, **kw: Any) -> Span:
    return Span(
        trace_id=trace,
        span_id=span,
        parent_span_id=kw.pop("parent", ""),
        operation_name=kw.pop("op", "op"),
        service_name=kw.pop("service", "svc"),
        start_ts=T0 + start_ms * MS,
        end_ts=T0 + (start_ms + dur_ms) * MS,
        **kw,
    )


def test_get_trace_returns_every_span_in_start_order(store: TraceStore) -> None:
    spans = [
        mk("t1", "c", 30, tags={"a": 1, "b": "x", "c": 0.5, "d": True}),
        mk("t1", "a", 10, logs=[SpanLog(ts=T0, message="m", fields={"k": "v"})], kind="server"),
        mk("t2", "z", 0),
        mk("t1", "b", 10, parent="a", error=True),
    ]
    store.write_batches([spans[:2], spans[2:]])
    got = store.get_trace("t1")
    assert [s.span_id for s in got] == ["a", "b", "c"]
    assert got == sorted([spans[0], spans[1], spans[3]], key=lambda s: (s.start_ts, s.span_id))
    assert [s.span_id for s in store.get_trace("t2")] == ["z"]
    assert store.get_trace("nope") == [] and store.get_trace("T1") == []  # ids are case-sensitive
    assert store.get_trace('t1" OR "t2') == [] and store.get_trace("") == []  # never FTS syntax
    assert set(store.get_traces(["t2", "nope", "t1"])) == {"t1", "t2"}


def test_a_span_written_twice_is_read_once_and_the_last_write_wins(store: TraceStore) -> None:
    first = mk("t1", "a", 0, dur_ms=10, tags={"v": 1})
    store.write_batches([[first, mk("t1", "b", 5)]])
    store.write_batches([[first]])
    again = mk("t1", "a", 0, dur_ms=20, tags={"v": 2})
    store.write_batches([[again]])
    got = store.get_trace("t1")
    assert [s.span_id for s in got] == ["a", "b"] and got[0] == again
    [summary] = store.search(service="svc")
    assert summary["span_count"] == 2 and summary["duration_ms"] == 20.0


def test_rollback_leaves_the_store_writable(store: TraceStore) -> None:
    store.write_batches([[mk("t1", "a", 0)]])
    with pytest.raises(AttributeError):
        store.write_batches([[mk("t2", "a", 0)], [object()]])  # type: ignore[list-item]
    store.write_batches([[mk("t3", "a", 0, op="new")]])
    assert store.get_trace("t2") == [] and len(store.get_trace("t3")) == 1
    assert store.operations("svc") == ["new", "op"]


def test_catalogue_of_services_and_operations(store: TraceStore) -> None:
    store.write_batches(
        [
            [
                mk("t1", "a", 0, service="api", op="GET /x", kind="server"),
                mk("t1", "b", 1, service="api", op="GET /x", kind="client"),
                mk("t1", "c", 2, service="db", op="SELECT"),
                mk("t2", "a", 3, service="api", op="POST /y", kind="server"),
            ]
        ]
    )
    assert store.services() == ["api", "db"]
    assert store.operations("api") == ["GET /x", "POST /y"]
    assert store.operations("api", span_kind="client") == ["GET /x"]
    assert store.operation_kinds("api") == [("GET /x", "client"), ("GET /x", "server"), ("POST /y", "server")]
    assert store.operations("nobody") == []


def test_delete_before_removes_spans_index_entries_and_stale_names(store: TraceStore) -> None:
    hour = 3600 * 1000
    store.write_batches(
        [[mk("old", "a", 0, service="gone"), mk("mixed", "a", 0), mk("mixed", "b", 2 * hour)]]
    )
    store.write_batches([[mk("new", "a", 2 * hour)]])
    assert store.delete_before(T0 + hour * MS) == 2
    assert store.get_trace("old") == []
    assert [s.span_id for s in store.get_trace("mixed")] == ["b"]
    assert len(store.get_trace("new")) == 1
    assert store.services() == ["svc"]
    assert store.delete_before(T0 + 3 * hour * MS) == 2
    assert store.services() == [] and store.search() == []
    store.write_batches([[mk("again", "a", 5 * hour)]])  # rowids reused after the table emptied
    assert [s.trace_id for s in store.get_trace("again")] == ["again"] and store.get_trace("new") == []
    # FTS5 compares its index with the spans table and raises if they disagree.
    store.wconn.execute("INSERT INTO trace_fts(trace_fts, rank) VALUES ('integrity-check', 1)")


def test_delete_before_works_in_chunks(store: TraceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import airisd_plugins.outputs.sqlite.traces_store as mod

    monkeypatch.setattr(mod, "_DELETE_CHUNK", 3)
    store.write_batches([[mk(f"t{i}", "a", i) for i in range(10)]])
    assert store.delete_before(T0 + 7 * MS) == 7
    assert [s["trace_id"] for s in store.search(limit=100)] == ["t9", "t8", "t7"]


def test_summaries_describe_whole_traces(store: TraceStore) -> None:
    store.write_batches(
        [
            [
                mk("t1", "root", 0, 100, service="api", op="GET /x"),
                mk("t1", "child", 10, 200, service="db", op="SELECT", parent="root", error=True),
                mk("t2", "orphan", 50, 5, parent="missing", op="late"),
            ]
        ]
    )
    assert store.search(service="db") == [
        {
            "trace_id": "t1",
            "root_service": "api",
            "root_operation": "GET /x",
            "start_time": "2024-01-15T10:30:00.000Z",
            "duration_ms": 210.0,
            "span_count": 2,
            "services": ["api", "db"],
            "error": True,
        }
    ]
    [orphan] = store.search(operation="late")
    assert orphan["root_operation"] == "late" and orphan["error"] is False


def test_search_needs_one_span_to_satisfy_everything(store: TraceStore) -> None:
    # t1: api is slow, db has the error tag; no single span is both.
    store.write_batches(
        [
            [
                mk("t1", "a", 0, 900, service="api"),
                mk("t1", "b", 1, 5, service="db", tags={"http.status_code": 500}),
                mk("t2", "a", 2, 900, service="db", tags={"http.status_code": 500}),
            ]
        ]
    )
    hits = store.find_trace_ids(service="db", min_duration_ns=500 * MS, tags=[("http.status_code", "500")])
    assert hits == ["t2"]
    assert store.find_trace_ids(service="db", tags=[("http.status_code", "500")]) == ["t2", "t1"]


# -- search against a brute-force oracle ---------------------------------------------------------

SERVICES = ["api", "db", "auth"]
OPERATIONS = ["GET /a", "POST /b", "SELECT"]
TAG_VALUES: list[str | int | float | bool] = [
    *(True, False, "true", "false", 500, "500", 500.0, 200, 1e16, 1e-05, 0.5),
    *("x", 'q"uote', "back\\slash", "a:b", "é", "/api/x/5", "/api/x/50"),
]
FILTER_VALUES = ["true", "false", "500", "200", "10000000000000000", "1e-05", "0.5", "500.0", "x"]
FILTER_VALUES += ['q"uote', "back\\slash", "a:b", "é", "/api/x/5"]
TAG_KEYS = ["http.status_code", "flag", "url", "resource.host.name", "host.name", 'we"ird']

span_strategy = st.fixed_dictionaries(
    {
        "service": st.sampled_from(SERVICES),
        "op": st.sampled_from(OPERATIONS),
        "start_ms": st.integers(0, 50),
        "dur_ms": st.integers(0, 40) | st.integers(90, 250),
        "error": st.booleans(),
        "tags": st.dictionaries(st.sampled_from(TAG_KEYS), st.sampled_from(TAG_VALUES), max_size=3),
    }
)
traces_strategy = st.lists(st.lists(span_strategy, min_size=1, max_size=4), min_size=1, max_size=12)
query_strategy = st.fixed_dictionaries(
    {},
    optional={
        "service": st.sampled_from(SERVICES),
        "operation": st.sampled_from(OPERATIONS),
        "from_ns": st.integers(0, 50).map(lambda ms: T0 + ms * MS),
        "to_ns": st.integers(0, 50).map(lambda ms: T0 + ms * MS),
        "min_duration_ns": (st.integers(0, 40) | st.integers(90, 250)).map(lambda ms: ms * MS),
        "max_duration_ns": (st.integers(0, 40) | st.integers(90, 250)).map(lambda ms: ms * MS),
        "tags": st.lists(
            st.tuples(st.sampled_from([*TAG_KEYS, "error"]), st.sampled_from(FILTER_VALUES)), max_size=2
        ),
        "limit": st.integers(1, 6),
    },
)


def oracle_text(value: str | int | float | bool) -> str:
    """The documented comparison: bools as true/false, integral floats without '.0'."""
    if value is True or value is False:
        return str(value).lower()
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def oracle_span_matches(s: Span, q: dict[str, Any]) -> bool:
    if "service" in q and s.service_name != q["service"]:
        return False
    if "operation" in q and s.operation_name != q["operation"]:
        return False
    if "from_ns" in q and s.start_ts < q["from_ns"]:
        return False
    if "to_ns" in q and s.start_ts > q["to_ns"]:
        return False
    if "min_duration_ns" in q and s.duration_ns < q["min_duration_ns"]:
        return False
    if "max_duration_ns" in q and s.duration_ns > q["max_duration_ns"]:
        return False
    for key, want in q.get("tags", []):
        if key == "error":
            have = "true" if s.error else "false"
        elif key in s.tags:
            have = oracle_text(s.tags[key])
        elif "resource." + key in s.tags:
            have = oracle_text(s.tags["resource." + key])
        else:
            return False
        if have != want:
            return False
    return True


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (1e16, "10000000000000000"),  # JSON spells it 1e16
        (1e-05, "1e-05"),  # JSON spells it 0.00001
        (500.0, "500"),
        (500, "500"),
        ("500", "500"),
        (True, "true"),
        ("true", "true"),
        ('q"uote', 'q"uote'),
        ("back\\slash", "back\\slash"),
        ("é", "é"),
    ],
)
def test_tag_filters_see_through_json_spellings(store: TraceStore, value: Any, want: str) -> None:
    store.write_batches([[mk("t1", "a", 0, tags={"k": value}), mk("t2", "a", 1, tags={"resource.k": value})]])
    store.write_batches([[mk("t3", "a", 2, tags={"k": "other", "kk": value})]])
    assert store.find_trace_ids(tags=[("k", want)]) == ["t2", "t1"]


@settings(max_examples=60)
@given(traces_strategy, st.data())
def test_search_agrees_with_brute_force(traces: list[list[dict[str, Any]]], data: st.DataObject) -> None:
    all_spans: dict[str, list[Span]] = {}
    for t, spans in enumerate(traces):
        tid = f"trace-{t}"
        all_spans[tid] = [
            mk(
                tid,
                f"s{i}",
                d["start_ms"],
                d["dur_ms"],
                service=d["service"],
                op=d["op"],
                error=d["error"],
                tags=d["tags"],
            )
            for i, d in enumerate(spans)
        ]
    # Tag filters drawn from the stored tags as well as at random, so that many of them match.
    stored = sorted({(k, oracle_text(v)) for ss in all_spans.values() for s in ss for k, v in s.tags.items()})
    stored += [(k.removeprefix("resource."), v) for k, v in stored if k.startswith("resource.")]
    filters = st.tuples(st.sampled_from([*TAG_KEYS, "error"]), st.sampled_from(FILTER_VALUES))
    if stored:
        filters = filters | st.sampled_from(stored)
    queries = data.draw(st.lists(query_strategy, min_size=1, max_size=6))
    for q in queries:
        if data.draw(st.booleans()):
            q["tags"] = data.draw(st.lists(filters, min_size=1, max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(Path(tmp))
        store.open()
        try:
            store.write_batches([spans for spans in all_spans.values()])
            for q in queries:
                check_query(store, all_spans, q)
        finally:
            store.close()


def check_query(store: TraceStore, all_spans: dict[str, list[Span]], q: dict[str, Any]) -> None:
    limit = q.get("limit", 20)
    newest: dict[str, int] = {}
    for tid, spans in all_spans.items():
        starts = [s.start_ts for s in spans if oracle_span_matches(s, q)]
        if starts:
            newest[tid] = max(starts)
    got = store.find_trace_ids(**q)
    assert len(got) == len(set(got)) == min(limit, len(newest)), (q, got, newest)
    assert set(got) <= set(newest)
    keys = [newest[t] for t in got]
    assert keys == sorted(keys, reverse=True), "newest matching span first"
    if got:  # every trace strictly newer than the last one returned must be there (ties may go either way)
        assert {t for t, k in newest.items() if k > keys[-1]} <= set(got)
    summaries = store.search(**q)
    assert [s["trace_id"] for s in summaries] == got
    for summary in summaries:
        spans = all_spans[summary["trace_id"]]
        start = min(s.start_ts for s in spans)
        assert summary["span_count"] == len(spans)
        assert summary["services"] == sorted({s.service_name for s in spans})
        assert summary["duration_ms"] == (max(s.end_ts for s in spans) - start) / MS
        assert summary["error"] == any(s.error for s in spans)
        root = min(spans, key=lambda s: (s.start_ts, s.span_id))  # no parents in these traces
        assert (summary["root_service"], summary["root_operation"]) == (
            root.service_name,
            root.operation_name,
        )
