"""The span formats: the seed's JSON span, Zipkin v2, tag filters, search parameters, and the
trace view and Jaeger renderings."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.errors import ValidationError
from airisd.model import Span, SpanLog
from airisd.traceformats import (
    MAX_TAGS,
    TagValue,
    is_error,
    jaeger_search_query,
    jaeger_trace,
    parse_tag_filters,
    search_query,
    span_from_json,
    spans_from_payload,
    spans_from_zipkin,
    stringify_tag,
    tags_match,
    trace_view,
)

T0 = 1_705_314_600_000_000_000  # 2024-01-15T10:30:00Z
MS = 1_000_000

SEED_SPAN: dict[str, Any] = {
    "trace_id": "abc123def456ghi789",
    "span_id": "span_001",
    "parent_span_id": None,
    "operation_name": "GET /api/users",
    "start_time": "2024-01-15T10:30:00.000Z",
    "end_time": "2024-01-15T10:30:00.250Z",
    "duration_ms": 250,
    "service_name": "user-api",
    "tags": {"http.method": "GET", "http.url": "/api/users", "http.status_code": 200, "component": "http"},
    "logs": [{"timestamp": "2024-01-15T10:30:00.050Z", "message": "Query database for users"}],
}


def seed(**changes: Any) -> dict[str, Any]:
    obj = dict(SEED_SPAN)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def field_of(exc: pytest.ExceptionInfo[ValidationError]) -> Any:
    return exc.value.details.get("field")


# -- the seed's span ---------------------------------------------------------------------------


def test_seed_span_parses_as_documented() -> None:
    span = span_from_json(SEED_SPAN)
    assert span.trace_id == "abc123def456ghi789"
    assert span.span_id == "span_001"
    assert span.parent_span_id == ""
    assert span.operation_name == "GET /api/users"
    assert span.service_name == "user-api"
    assert (span.start_ts, span.end_ts) == (T0, T0 + 250 * MS)
    assert span.tags["http.status_code"] == 200
    assert span.logs == [SpanLog(ts=T0 + 50 * MS, message="Query database for users")]
    assert span.error is False


def test_any_two_of_start_end_duration_give_the_third() -> None:
    a = span_from_json(seed(duration_ms=...))
    b = span_from_json(seed(end_time=...))
    c = span_from_json(seed(start_time=...))
    assert (a.start_ts, a.end_ts) == (b.start_ts, b.end_ts) == (c.start_ts, c.end_ts) == (T0, T0 + 250 * MS)
    frac = span_from_json(seed(end_time=..., duration_ms=1.5))
    assert frac.end_ts - frac.start_ts == 1_500_000


def test_duration_must_agree_with_the_times_within_a_millisecond() -> None:
    assert span_from_json(seed(duration_ms=250.9)).duration_ns == 250 * MS
    with pytest.raises(ValidationError) as exc:
        span_from_json(seed(duration_ms=252))
    assert field_of(exc) == "duration_ms"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end_time": "2024-01-15T10:29:59.000Z", "duration_ms": ...}, "end_time"),
        ({"trace_id": ...}, "trace_id"),
        ({"span_id": ...}, "span_id"),
        ({"operation_name": ...}, "operation_name"),
        ({"service_name": ...}, "service_name"),
        ({"service_name": "  "}, "service_name"),
        ({"start_time": ..., "end_time": ...}, "start_time"),
        ({"end_time": ..., "duration_ms": ...}, "end_time"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"duration_ms": "fast"}, "duration_ms"),
        ({"duration_ms": -1, "end_time": ...}, "duration_ms"),
        ({"duration_ms": True, "end_time": ...}, "duration_ms"),
        ({"trace_id": "abc 123"}, "trace_id"),
        ({"trace_id": "x" * 65}, "trace_id"),
        ({"span_id": 17}, "span_id"),
        ({"parent_span_id": "not/an/id"}, "parent_span_id"),
        ({"parent_span_id": "span_001"}, "parent_span_id"),
        ({"operation_name": "x" * 513}, "operation_name"),
        ({"tags": {"a": {"nested": 1}}}, "tags.a"),
        ({"tags": {"a": [1, 2]}}, "tags.a"),
        ({"tags": {"a": None}}, "tags.a"),
        ({"tags": {"a": math.nan}}, "tags.a"),
        ({"tags": {"a": 2**64}}, "tags.a"),
        ({"tags": {"": 1}}, "tags"),
        ({"tags": ["a"]}, "tags"),
        ({"tags": {f"k{i}": i for i in range(MAX_TAGS + 1)}}, "tags"),
        ({"logs": [{"message": "no time"}]}, "logs[0].timestamp"),
        ({"logs": [{"timestamp": "2024-01-15T10:30:00Z", "message": 5}]}, "logs[0].message"),
        ({"logs": [{"timestamp": "2024-01-15T10:30:00Z", "extra": {"a": 1}}]}, "logs[0].extra"),
        ({"logs": "oops"}, "logs"),
        ({"kind": "sideways"}, "kind"),
        ({"error": "yes"}, "error"),
        ({"servce_name": "typo"}, "servce_name"),
    ],
)
def test_bad_spans_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        span_from_json(seed(**changes))
    assert field_of(exc) == field, exc.value.message


def test_seed_ids_are_not_hex_but_have_a_shape() -> None:
    for good in ("abc123def456ghi789", "span_001", "A-b_9", "x" * 64, "0af7651916cd43dd8448eb211c80319c"):
        assert span_from_json(seed(trace_id=good)).trace_id == good
    for bad in ("", "a.b", "a b", "é", "x" * 65, "a\n"):
        with pytest.raises(ValidationError):
            span_from_json(seed(trace_id=bad))


@given(st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"))
def test_every_id_of_the_documented_shape_is_accepted(tid: str) -> None:
    assert span_from_json(seed(trace_id=tid, span_id=tid + "x" if len(tid) < 64 else "s")).trace_id == tid


@pytest.mark.parametrize(
    ("tags", "explicit", "expected"),
    [
        ({"error": True}, False, True),
        ({"error": "true"}, False, True),
        ({"error": "TRUE"}, False, True),
        ({"error": False}, False, False),
        ({"http.status_code": 500}, False, True),
        ({"http.status_code": "503"}, False, True),
        ({"http.response.status_code": 502}, False, True),
        ({"http.status_code": 404}, False, False),
        ({"otel.status_code": "ERROR"}, False, True),
        ({}, True, True),
        ({}, False, False),
    ],
)
def test_error_flag(tags: dict[str, Any], explicit: bool, expected: bool) -> None:
    assert span_from_json(seed(tags=tags, error=explicit)).error is expected


def test_log_fields_beyond_timestamp_and_message_are_kept() -> None:
    span = span_from_json(seed(logs=[{"timestamp": 1705314600050, "message": "m", "rows": 3, "db": "users"}]))
    assert span.logs == [SpanLog(ts=T0 + 50 * MS, message="m", fields={"rows": 3, "db": "users"})]


def test_payload_forms_and_batch_index() -> None:
    assert len(spans_from_payload(SEED_SPAN)) == 1
    two = [seed(span_id="a"), seed(span_id="b", parent_span_id="a")]
    assert [s.span_id for s in spans_from_payload({"spans": two})] == ["a", "b"]
    assert [s.span_id for s in spans_from_payload(two)] == ["a", "b"]
    with pytest.raises(ValidationError) as exc:
        spans_from_payload({"spans": [seed(span_id="a"), seed(span_id="b c")]})
    assert exc.value.details == {"field": "span_id", "index": 1}
    bad: object
    for bad in ({"spans": []}, {"spans": "x"}, {"spans": [], "extra": 1}, [], "text", 5):
        with pytest.raises(ValidationError):
            spans_from_payload(bad)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
span_like = st.fixed_dictionaries(
    {},
    optional={k: json_values for k in [*SEED_SPAN, "kind", "error"]}
    | {
        "trace_id": st.sampled_from(["abc", "a b", "", 5]) | json_values,
        "start_time": st.sampled_from(["2024-01-15T10:30:00Z", "bad", 1705314600, -5]) | json_values,
        "end_time": st.sampled_from(["2024-01-15T10:30:01Z", "2024-01-15T10:29:00Z"]) | json_values,
    },
)


@given(span_like)
def test_random_span_objects_either_parse_or_raise_validation_error(obj: dict[str, Any]) -> None:
    try:
        span = span_from_json(obj)
    except ValidationError as exc:
        assert exc.details.get("field")
        return
    assert span.end_ts >= span.start_ts
    assert set(obj) >= {"trace_id", "span_id", "operation_name", "service_name"}


# -- Zipkin v2 -------------------------------------------------------------------------------


ZIPKIN = [
    {
        "traceId": "5982fe77008310cc80f1da5e10147517",
        "id": "bd7a977555f6b982",
        "name": "get /api",
        "kind": "SERVER",
        "timestamp": 1705314600000000,
        "duration": 250000,
        "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1"},
        "remoteEndpoint": {"serviceName": "browser", "ipv4": "10.0.0.9", "port": 443},
        "annotations": [{"timestamp": 1705314600050000, "value": "ws"}],
        "tags": {"http.path": "/api", "http.status_code": "500"},
    },
    {
        "traceId": "5982fe77008310cc80f1da5e10147517",
        "parentId": "bd7a977555f6b982",
        "id": "be2d01e33cc78d97",
        "name": "select",
        "kind": "CLIENT",
        "timestamp": 1705314600010000,
        "localEndpoint": {"serviceName": "frontend"},
        "tags": {"error": "connection refused"},
    },
]


def test_zipkin_v2_spans() -> None:
    root, child = spans_from_zipkin(orjson.dumps(ZIPKIN))
    assert (root.trace_id, root.span_id, root.parent_span_id) == (
        ZIPKIN[0]["traceId"],
        "bd7a977555f6b982",
        "",
    )
    assert (root.service_name, root.operation_name, root.kind) == ("frontend", "get /api", "server")
    assert (root.start_ts, root.end_ts) == (T0, T0 + 250 * MS)
    assert root.tags["peer.service"] == "browser" and root.tags["net.peer.port"] == 443
    assert root.logs == [SpanLog(ts=T0 + 50 * MS, message="ws")]
    assert root.error is True  # status code 500
    assert child.parent_span_id == root.span_id and child.kind == "client"
    assert child.duration_ns == 0 and child.error is True  # Zipkin: any "error" tag


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'[{"traceId": "a", "id": "b"}]',
        b'[{"traceId": "a b", "id": "b", "timestamp": 1}]',
        b'[{"traceId": "a", "id": "b", "timestamp": -1}]',
        b'[{"traceId": "a", "id": "b", "timestamp": 1, "tags": {"x": 1}}]',
        b'[{"traceId": "a", "id": "b", "timestamp": 1, "kind": "SIDEWAYS"}]',
        b'[{"traceId": "a", "id": "b", "timestamp": 1, "annotations": [{"value": "x"}]}]',
        b"[5]",
    ],
)
def test_bad_zipkin_bodies(body: bytes) -> None:
    with pytest.raises(ValidationError):
        spans_from_zipkin(body)


# -- tag filters and search parameters -------------------------------------------------------


def test_tag_filters_colon_and_json_forms() -> None:
    assert parse_tag_filters("error:true,http.status_code:500") == [
        ("error", "true"),
        ("http.status_code", "500"),
    ]
    assert parse_tag_filters(" http.url : http://x/a:b ") == [("http.url", "http://x/a:b")]
    assert parse_tag_filters('{"error":"true","http.status_code":500,"ok":false}') == [
        ("error", "true"),
        ("http.status_code", "500"),
        ("ok", "false"),
    ]
    assert parse_tag_filters("") == []


@pytest.mark.parametrize(
    "text", ["error", "error:", ":true", "a:1,,b:2", "{bad json", '["a"]', '{"a":{"b":1}}']
)
def test_malformed_tag_filters(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_tag_filters(text)
    assert field_of(exc) == "tags"


filter_keys = st.text(
    st.characters(blacklist_characters=",:", blacklist_categories=["Cs"]), min_size=1
).filter(lambda s: s.strip() == s and not s.startswith("{"))
filter_values = st.text(
    st.characters(blacklist_characters=",", blacklist_categories=["Cs"]), min_size=1
).filter(lambda s: s.strip() == s)


@given(st.lists(st.tuples(filter_keys, filter_values), min_size=1, max_size=5))
def test_tag_filters_round_trip_in_both_forms(pairs: list[tuple[str, str]]) -> None:
    assert parse_tag_filters(",".join(f"{k}:{v}" for k, v in pairs)) == pairs
    as_json = orjson.dumps(dict(pairs)).decode()
    assert parse_tag_filters(as_json) == list(dict(pairs).items())


@given(st.text(max_size=40))
def test_tag_filter_parser_never_crashes(text: str) -> None:
    try:
        pairs = parse_tag_filters(text)
    except ValidationError:
        return
    assert all(k and v for k, v in pairs)


def test_stringify_and_match() -> None:
    assert [stringify_tag(v) for v in (True, False, 500, 500.0, 0.5, "x")] == [
        "true",
        "false",
        "500",
        "500",
        "0.5",
        "x",
    ]
    tags: dict[str, TagValue] = {"http.status_code": 500, "resource.host.name": "h1", "flag": True}
    assert tags_match(tags, False, [("http.status_code", "500"), ("host.name", "h1"), ("flag", "true")])
    assert not tags_match(tags, False, [("http.status_code", "500.0")])
    assert tags_match({}, True, [("error", "true")]) and not tags_match(
        {"error": True}, False, [("error", "true")]
    )
    assert tags_match({}, False, [("error", "false")])


def test_search_query_from_seed_parameters() -> None:
    q = search_query(
        {
            "service": "user-api",
            "from": "2024-01-15T10:00:00Z",
            "to": "2024-01-15T11:00:00Z",
            "min_duration": "500ms",
            "max_duration": "1.5s",
            "tags": "error:true",
            "limit": "5",
        }
    )
    assert q.as_kwargs() == {
        "service": "user-api",
        "operation": None,
        "from_ns": T0 - 30 * 60 * 10**9,
        "to_ns": T0 + 30 * 60 * 10**9,
        "min_duration_ns": 500 * MS,
        "max_duration_ns": 1500 * MS,
        "tags": [("error", "true")],
        "limit": 5,
    }
    assert search_query({}).limit == 20


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_duration": "fast"}, "min_duration"),
        ({"max_duration": "10"}, "max_duration"),
        ({"min_duration": "2s", "max_duration": "1s"}, "max_duration"),
        ({"from": "noon"}, "from"),
        ({"from": "2024-01-15T11:00:00Z", "to": "2024-01-15T10:00:00Z"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"tags": "error"}, "tags"),
    ],
)
def test_bad_search_parameters_name_the_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        search_query(params)
    assert field_of(exc) == field


def test_jaeger_search_parameters() -> None:
    q = jaeger_search_query(
        {
            "service": "s",
            "operation": "op",
            "start": "1705314600000000",
            "end": "1705314660000000",
            "minDuration": "1.2s",
            "maxDuration": "1m30s",
            "tags": '{"error":"true"}',
            "limit": "20",
            "lookback": "1h",
        }
    )
    assert (q.from_ns, q.to_ns) == (T0, T0 + 60 * 10**9)
    assert (q.min_duration_ns, q.max_duration_ns) == (1200 * MS, 90 * 10**9)
    assert q.tags == [("error", "true")]
    with pytest.raises(ValidationError) as exc:
        jaeger_search_query({"minDuration": "fast"})
    assert field_of(exc) == "minDuration"
    with pytest.raises(ValidationError) as exc:
        jaeger_search_query({"start": "2024-01-15"})
    assert field_of(exc) == "start"


# -- renderings ----------------------------------------------------------------------------


def mk(span_id: str, parent: str = "", start_ms: int = 0, dur_ms: int = 10, **kw: Any) -> Span:
    return Span(
        trace_id="t1",
        span_id=span_id,
        parent_span_id=parent,
        operation_name=kw.pop("op", f"op-{span_id}"),
        service_name=kw.pop("service", "svc"),
        start_ts=T0 + start_ms * MS,
        end_ts=T0 + (start_ms + dur_ms) * MS,
        **kw,
    )


def test_trace_view_tree_order_and_totals() -> None:
    spans = [
        mk("c2", "root", 30, 5, service="db"),
        mk("root", "", 0, 100, service="api", op="GET /x"),
        mk("c1", "root", 10, 50, service="auth"),
        mk("g1", "c1", 20, 10, service="db", error=True),
        mk("orphan", "missing", 200, 10),
    ]
    view = trace_view(spans)
    assert [s["span_id"] for s in view["spans"]] == ["root", "c1", "g1", "c2", "orphan"]
    by_id = {s["span_id"]: s for s in view["spans"]}
    assert by_id["root"]["children"] == ["c1", "c2"] and by_id["root"]["depth"] == 0
    assert by_id["c1"]["children"] == ["g1"] and by_id["g1"]["depth"] == 2
    assert by_id["orphan"]["depth"] == 0 and by_id["orphan"]["parent_span_id"] == "missing"
    assert view["root_operation"] == "GET /x" and view["root_service"] == "api"
    assert view["duration_ms"] == 210.0
    assert view["start_time"] == "2024-01-15T10:30:00.000Z" and view["end_time"] == "2024-01-15T10:30:00.210Z"
    assert view["services"] == ["api", "auth", "db", "svc"]
    assert view["span_count"] == 5 and view["error"] is True
    assert by_id["g1"]["duration_ms"] == 10.0 and by_id["root"]["parent_span_id"] is None


def test_trace_view_without_a_true_root_or_with_a_cycle() -> None:
    orphans = trace_view([mk("b", "gone", 5), mk("a", "gone", 1)])
    assert orphans["root_operation"] == "op-a"
    cycle = trace_view([mk("a", "b", 1), mk("b", "a", 2)])
    assert {s["span_id"]: s["depth"] for s in cycle["spans"]} == {"a": 0, "b": 1}
    assert cycle["root_operation"] == "op-a"


def test_jaeger_trace_shape() -> None:
    root = mk(
        "root",
        "",
        0,
        100,
        service="api",
        kind="server",
        tags={"http.status_code": 500, "resource.host.name": "h1", "ratio": 0.5, "ok": True},
        logs=[SpanLog(ts=T0 + MS, message="started", fields={"n": 1})],
        error=True,
    )
    child = mk("child", "root", 10, 20, service="db", tags={"error": "conn refused"}, error=True)
    orphan = mk("o", "nowhere", 50, 1, service="api", tags={"resource.host.name": "h2"})
    out = orjson.loads(orjson.dumps(jaeger_trace([child, root, orphan])))
    assert out["traceID"] == "t1" and out["warnings"] is None
    spans = {s["spanID"]: s for s in out["spans"]}
    r = spans["root"]
    assert r["startTime"] == T0 // 1000 and r["duration"] == 100_000 and r["references"] == []
    assert {"key": "http.status_code", "type": "int64", "value": 500} in r["tags"]
    assert {"key": "ratio", "type": "float64", "value": 0.5} in r["tags"]
    assert {"key": "ok", "type": "bool", "value": True} in r["tags"]
    assert {"key": "span.kind", "type": "string", "value": "server"} in r["tags"]
    assert {"key": "error", "type": "bool", "value": True} in r["tags"]
    assert all(not t["key"].startswith("resource.") for t in r["tags"])
    assert r["logs"] == [
        {
            "timestamp": T0 // 1000 + 1000,
            "fields": [
                {"key": "event", "type": "string", "value": "started"},
                {"key": "n", "type": "int64", "value": 1},
            ],
        }
    ]
    c = spans["child"]
    assert c["references"] == [{"refType": "CHILD_OF", "traceID": "t1", "spanID": "root"}]
    assert {"key": "error", "type": "bool", "value": True} in c["tags"]
    assert {"key": "error.message", "type": "string", "value": "conn refused"} in c["tags"]
    assert spans["o"]["warnings"] and "nowhere" in spans["o"]["warnings"][0]
    procs = out["processes"]
    assert procs[r["processID"]] == {
        "serviceName": "api",
        "tags": [{"key": "host.name", "type": "string", "value": "h1"}],
    }
    assert procs[c["processID"]]["serviceName"] == "db"
    assert spans["o"]["processID"] not in (r["processID"], c["processID"])  # other host: other process
    assert len(procs) == 3


def test_is_error_ignores_non_numeric_status() -> None:
    assert not is_error({"http.status_code": "5xx"})
    assert not is_error({"http.status_code": True})
