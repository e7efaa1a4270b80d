"""The OTLP protobuf fast path (``_decode_protobuf_fast``) against the general walk it stands in
for: on any body, the spans it builds are the general walk's first ones (same tags in the same
order), and where it stops, the general walk takes over and gives the same answer as alone
(rejections, parse errors, their messages)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from airisd import otlp_traces
from airisd.model import Span
from airisd.otlp_traces import (
    PROTOBUF,
    OtlpDecodeError,
    _decode_protobuf_fast,
    _decode_protobuf_general,
    decode_otlp_traces_partial,
)
from airisd.timeparse import MAX_TS_NS
from airisd.traceformats import MAX_KEY_LEN, MAX_OPERATION_LEN, MAX_SERVICE_LEN, MAX_TAGS, MAX_VALUE_LEN, is_error


def _general(body: bytes) -> tuple[list[Span], int, str] | str:
    try:
        batch = _decode_protobuf_general(body)
    except OtlpDecodeError as exc:
        return f"error: {exc.message} {exc.details}"
    return batch.spans, batch.rejected, batch.message


def _json(spans: list[Span]) -> bytes:
    return msgspec.json.encode(spans)  # tag order and bool/int kept apart, unlike ==


def check_same(body: bytes) -> bool:
    """The fast path's spans are the general walk's first ones, and the two together give the
    general walk's answer; True if the fast path did the whole body."""
    want = _general(body)
    for _ in range(2):  # cold, then with the attribute cache filled by the first pass
        spans, resume = _decode_protobuf_fast(body)
        if isinstance(want, str):  # refused: the fast path must not have finished
            assert resume is not None
        else:
            assert _json(spans) == _json(want[0][:len(spans)])
            if resume is None:
                assert len(spans) == len(want[0]) and want[1:] == (0, "")
    try:
        batch = decode_otlp_traces_partial(body, PROTOBUF)
        assert not isinstance(want, str), want
        assert (_json(batch.spans), batch.rejected, batch.message) == (_json(want[0]), want[1], want[2])
    except OtlpDecodeError as exc:
        assert want == f"error: {exc.message} {exc.details}"
    return resume is None


def _near(limit: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, limit, limit + 1])


def _mostly(good: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """good, or one time in 40 an edge case: most spans must be valid, or the fast path is
    never taken and the test proves nothing."""
    return st.integers(0, 39).flatmap(lambda n: edge if n == 39 else good)


_text = _mostly(st.sampled_from(["", "GET", "é漢", "error", "true", "TRUE", "503", "200", "x" * 300]),
                st.builds(lambda n: "v" * n, _near(MAX_VALUE_LEN)))
_keys = _mostly(st.sampled_from(["k", "http.method", "http.status_code", "http.response.status_code", "error",
                                 "otel.status_code", "otel.scope.name", "resource.host", "service.name"]),
                st.one_of(st.just(""), st.builds(lambda n: "k" * n, _near(MAX_KEY_LEN))))


def _any_value(depth: int = 0) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.builds(lambda s: AnyValue(string_value=s), _text),
        st.builds(lambda i: AnyValue(int_value=i), st.sampled_from([0, 200, 500, 503, -(2**63), 2**63 - 1])),
        st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
        st.builds(lambda d: AnyValue(double_value=d), st.sampled_from([0.5, 500.0, math.nan, math.inf, -math.inf])),
        st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=8)),
        st.just(AnyValue()),
    )
    if depth >= 2:
        return scalars

    def array(values: list[AnyValue]) -> AnyValue:
        v = AnyValue()
        v.array_value.values.extend(values)
        return v

    def kvlist(items: list[tuple[str, AnyValue]]) -> AnyValue:
        v = AnyValue()
        for k, x in items:
            kv = v.kvlist_value.values.add()
            kv.key = k
            kv.value.CopyFrom(x)
        return v

    inner = _any_value(depth + 1)
    return st.one_of(scalars, st.builds(array, st.lists(inner, max_size=3)),
                     st.builds(kvlist, st.lists(st.tuples(_keys, inner), max_size=3)))


_attrs = st.lists(st.tuples(_keys, _any_value()), max_size=4)
_trace_ids = _mostly(st.sampled_from([b"\x01" * 16, b"\x02" * 16]), st.sampled_from([bytes(16), b"\x01" * 15, b""]))
_span_ids = _mostly(st.sampled_from([b"\x0a" * 8, b"\x0b" * 8, b"\x0c" * 8]),
                    st.sampled_from([bytes(8), b"\x0a" * 7, b""]))
_parent_ids = _mostly(st.sampled_from([b"", b"\x0d" * 8]), st.sampled_from([bytes(8), b"\x0a" * 7, b"\x0a" * 8]))
_ts = _mostly(st.sampled_from([1_705_314_600_000_000_000, 1_705_314_600_000_000_001]),
              st.sampled_from([0, 1, MAX_TS_NS, MAX_TS_NS + 1]))


def _fill(attributes: Any, items: list[tuple[str, AnyValue]]) -> None:
    for k, v in items:
        kv = attributes.add()
        kv.key = k
        kv.value.CopyFrom(v)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """ExportTraceServiceRequests around every rule: ids, kinds, times, limits, attribute types,
    keys that collide with the resource/scope/status tags, events, status."""
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        service = draw(_mostly(st.sampled_from([None, "svc", "é漢"]),
                               st.one_of(st.builds(lambda n: "s" * n, _near(MAX_SERVICE_LEN)),
                                         st.just(AnyValue(int_value=3)))))
        if isinstance(service, str):
            _fill(rs.resource.attributes, [("service.name", AnyValue(string_value=service))])
        elif service is not None:
            _fill(rs.resource.attributes, [("service.name", service)])
        _fill(rs.resource.attributes, draw(_attrs))
        if draw(st.integers(0, 9)) == 9:
            _fill(rs.resource.attributes, [(f"r{i}", AnyValue(int_value=i)) for i in range(MAX_TAGS)])
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(_mostly(st.sampled_from(["", "lib"]), st.just("n" * (MAX_VALUE_LEN + 1))))
            ss.scope.version = draw(st.sampled_from(["", "1.0"]))
            for _ in range(draw(st.integers(0, 3))):
                sp = ss.spans.add()
                sp.trace_id = draw(_trace_ids)
                sp.span_id = draw(_span_ids)
                sp.parent_span_id = draw(_parent_ids)
                sp.name = draw(_mostly(st.sampled_from(["", "GET /x"]),
                                       st.builds(lambda n: "o" * n, _near(MAX_OPERATION_LEN))))
                sp.kind = draw(_mostly(st.integers(0, 5), st.sampled_from([6, 9])))
                sp.start_time_unix_nano = draw(_ts)
                delta = draw(_mostly(st.sampled_from([0, 1, 10**9]), st.sampled_from([-1, MAX_TS_NS])))
                sp.end_time_unix_nano = max(0, sp.start_time_unix_nano + delta)
                _fill(sp.attributes, draw(_attrs))
                if draw(st.integers(0, 19)) == 19:
                    _fill(sp.attributes, [(f"a{i}", AnyValue(bool_value=True)) for i in range(MAX_TAGS)])
                for _ in range(draw(st.integers(0, 2))):
                    ev = sp.events.add()
                    ev.time_unix_nano = draw(_ts)
                    ev.name = draw(_text)
                    _fill(ev.attributes, draw(_attrs))
                sp.status.code = draw(_mostly(st.integers(0, 2), st.just(7)))
                sp.status.message = draw(_mostly(st.sampled_from(["", "boom"]), st.just("m" * (MAX_VALUE_LEN + 1))))
    return req.SerializeToString()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies())
def test_fast_path_equals_the_general_walk(body: bytes) -> None:
    check_same(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies(), st.binary(min_size=1, max_size=12), st.integers(0, 10_000))
def test_fast_path_on_corrupted_bodies(body: bytes, junk: bytes, at: int) -> None:
    at %= len(body) + 1
    check_same(body[:at] + junk + body[at + len(junk):])


@given(st.binary(max_size=200))
def test_fast_path_on_random_bytes(data: bytes) -> None:
    check_same(data)


def _span_body(value: AnyValue, key: str = "k") -> bytes:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "op"
    _fill(sp.attributes, [(key, value)])
    return req.SerializeToString()


def test_the_common_case_takes_the_fast_path() -> None:
    assert check_same(_span_body(AnyValue(int_value=200), "http.status_code"))
    assert check_same(_span_body(AnyValue(string_value="GET"), "http.method"))


@pytest.mark.parametrize("kvlist", [False, True])
def test_deeply_nested_attributes_are_refused_like_the_whole_body(kvlist: bool) -> None:
    """Parsed alone, an attribute escapes the parser's nesting limit; the body as a whole does not."""
    for depth in range(0, 60, 3):
        v = AnyValue(string_value="x")
        for i in range(depth):
            w = AnyValue()
            if kvlist and i % 2:
                kv = w.kvlist_value.values.add()
                kv.key = "a"
                kv.value.CopyFrom(v)
            else:
                w.array_value.values.add().CopyFrom(v)
            v = w
        check_same(_span_body(v))


def test_attribute_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_traces, "_ATTR_CACHE_MAX", 8)
    for i in range(50):
        assert check_same(_span_body(AnyValue(int_value=i), f"k{i}"))
        assert len(otlp_traces._ATTR_CACHE) <= 8
    assert check_same(_span_body(AnyValue(string_value="v" * 1000)))  # too long to be kept
    assert b"v" * 1000 not in b"".join(otlp_traces._ATTR_CACHE)


def _is_error_reference(tags: Mapping[str, Any]) -> bool:
    """is_error as it was before it was made cheaper (the rule itself)."""
    flag = tags.get("error")
    if flag is True or (isinstance(flag, str) and flag.lower() == "true"):
        return True
    for key in ("http.status_code", "http.response.status_code"):
        code = tags.get(key)
        if isinstance(code, str) and code.isascii() and code.isdigit():
            code = int(code)
        if isinstance(code, int | float) and not isinstance(code, bool) and code >= 500:
            return True
    return tags.get("otel.status_code") == "ERROR"


_tag_values = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.sampled_from([499, 500, 503, 600]),
                        st.floats(), st.sampled_from(["true", "True", "TRUE", "false", "500", "499", "５００", " 500",
                                                      "ERROR", "OK", "", "x"]), st.text(max_size=4))


@given(st.dictionaries(st.sampled_from(["error", "http.status_code", "http.response.status_code",
                                        "otel.status_code", "other"]), _tag_values))
def test_is_error_keeps_its_rule(tags: dict[str, Any]) -> None:
    assert is_error(tags) == _is_error_reference(tags)


@pytest.mark.parametrize("where", ["attribute key", "attribute value", "span name", "event attribute"])
def test_invalid_utf8_anywhere_is_the_general_parse_error(where: str) -> None:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "NAME"
    _fill(sp.attributes, [("KEY", AnyValue(string_value="VALUE"))])
    _fill(sp.events.add().attributes, [("EVKEY", AnyValue(int_value=1))])
    marker = {"attribute key": b"KEY", "attribute value": b"VALUE", "span name": b"NAME",
              "event attribute": b"EVKEY"}[where]
    body = req.SerializeToString().replace(marker, b"\xff" * len(marker), 1)
    assert _decode_protobuf_fast(body)[1] is not None
    with pytest.raises(OtlpDecodeError, match="ExportTraceServiceRequest"):
        decode_otlp_traces_partial(body, PROTOBUF)


def test_a_bad_span_resumes_the_general_walk_there() -> None:
    """The spans before it are not walked twice; the rejection names its place."""
    req = ExportTraceServiceRequest()
    for r in range(2):
        ss = req.resource_spans.add().scope_spans.add()
        for i in range(3):
            sp = ss.spans.add()
            sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, bytes([r + 1, i + 1]) * 4, "op"
            sp.start_time_unix_nano, sp.end_time_unix_nano = 10, 20
    req.resource_spans[1].scope_spans[0].spans[1].end_time_unix_nano = 5
    body = req.SerializeToString()
    spans, resume = _decode_protobuf_fast(body)
    assert len(spans) == 4 and resume == (1, 0, 1)
    batch = decode_otlp_traces_partial(body, PROTOBUF)
    assert len(batch.spans) == 5 and batch.rejected == 1
    assert batch.message == "resourceSpans[1].scopeSpans[0].spans[1]: end_time is before start_time"
    assert check_same(body) is False
