"""Log parsing: level normalisation, the JSON record, and plain text lines."""

from __future__ import annotations

import json
import string

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.errors import ValidationError
from airisd.logparse import (
    LEVELS,
    MAX_MESSAGE_BYTES,
    normalize_level,
    parse_line,
    parse_plain_body,
    record_from_json,
)
from airisd.timeparse import format_ts, parse_timestamp

RECEIVED = 1_800_000_000_000_000_000

# -- levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("warn", "WARN"),
        ("WARNING", "WARN"),
        ("Warning", "WARN"),
        ("err", "ERROR"),
        ("error", "ERROR"),
        ("ERROR", "ERROR"),
        ("crit", "FATAL"),
        ("critical", "FATAL"),
        ("fatal", "FATAL"),
        ("panic", "FATAL"),
        ("emerg", "FATAL"),
        ("info", "INFO"),
        ("information", "INFO"),
        ("notice", "INFO"),
        (" INFO ", "INFO"),
        ("debug", "DEBUG"),
        ("trace", "TRACE"),
        ("verbose", "UNKNOWN"),
        ("", "UNKNOWN"),
        ("errors", "UNKNOWN"),
        ("3", "UNKNOWN"),
    ],
)
def test_normalize_level(raw: str, level: str) -> None:
    assert normalize_level(raw) == level


@given(st.text(max_size=20))
def test_normalize_level_is_total_and_idempotent(raw: str) -> None:
    level = normalize_level(raw)
    assert level in LEVELS
    if level != "UNKNOWN":
        assert normalize_level(level) == level


# -- JSON records ----------------------------------------------------------------------------

SEED_RECORD = {
    "timestamp": "2024-01-15T10:30:00Z",
    "level": "ERROR",
    "message": "Database connection failed",
    "service": "user-api",
    "trace_id": "abc123def456",
    "span_id": "789ghi012jkl",
    "labels": {"component": "database", "operation": "connect"},
    "stack_trace": "Error: Connection timeout\n  at Database.connect()\n  at UserService.init()",
    "user_id": "user_12345",
    "request_id": "req_67890",
}


def test_seed_record() -> None:
    r = record_from_json(dict(SEED_RECORD), received_ns=RECEIVED)
    assert r.ts == parse_timestamp("2024-01-15T10:30:00Z")
    assert (r.level, r.message, r.service, r.trace_id, r.span_id) == (
        "ERROR",
        "Database connection failed",
        "user-api",
        "abc123def456",
        "789ghi012jkl",
    )
    assert r.labels == {"component": "database", "operation": "connect"}
    assert r.stack_trace.startswith("Error: Connection timeout") and r.user_id == "user_12345"
    assert r.request_id == "req_67890" and r.attributes == {}


def test_batch_items_and_defaults() -> None:
    r = record_from_json(
        {"level": "warn", "message": "High memory usage", "service": "user-api"}, received_ns=5
    )
    assert (r.ts, r.level) == (5, "WARN")
    assert record_from_json({"message": "x"}, received_ns=5).level == "UNKNOWN"
    assert record_from_json({"message": "x", "level": 50}, received_ns=5).level == "ERROR"  # pino
    assert record_from_json({"message": "x", "timestamp": 1705314600}, received_ns=5).ts == 1705314600 * 10**9
    assert record_from_json({"message": "x", "user_id": 12345}, received_ns=5).user_id == "12345"


def test_other_fields_become_flattened_attributes() -> None:
    r = record_from_json(
        {"message": "m", "http": {"method": "GET", "status": 500}, "tags": ["a"], "ok": True}, received_ns=1
    )
    assert r.attributes == {"http.method": "GET", "http.status": 500, "tags": ["a"], "ok": True}


def test_labels_are_strings() -> None:
    r = record_from_json({"message": "m", "labels": {"n": 3, "b": False, "f": 1.5, "s": "x"}}, received_ns=1)
    assert r.labels == {"n": "3", "b": "false", "f": "1.5", "s": "x"}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({}, "message"),
        ({"message": None}, "message"),
        ({"message": 5}, "message"),
        ({"message": "x" * (MAX_MESSAGE_BYTES + 1)}, "message"),
        ({"message": "가" * (MAX_MESSAGE_BYTES // 3 + 1)}, "message"),  # bytes, not characters
        ({"message": "m", "timestamp": "yesterday"}, "timestamp"),
        ({"message": "m", "timestamp": True}, "timestamp"),
        ({"message": "m", "level": ["x"]}, "level"),
        ({"message": "m", "service": {"a": 1}}, "service"),
        ({"message": "m", "service": "s" * 2000}, "service"),
        ({"message": "m", "labels": "a=b"}, "labels"),
        ({"message": "m", "labels": {"a": {"b": 1}}}, "labels.a"),
        ({"message": "m", "labels": {"a": None}}, "labels.a"),
        ({"message": "m", "labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"message": "m", "labels": {"k" * 129: "v"}}, "labels"),
        ({"message": "m", "labels": {"": "v"}}, "labels"),
    ],
)
def test_bad_records_name_the_field_and_the_index(obj: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        record_from_json(obj, received_ns=1, index=3)
    assert info.value.details == {"field": field, "index": 3}
    assert info.value.message.startswith(f"logs[3].{field}: ")
    with pytest.raises(ValidationError) as info:
        record_from_json(obj, received_ns=1)
    assert info.value.details == {"field": field}


def test_too_many_attributes() -> None:
    with pytest.raises(ValidationError, match="attributes"):
        record_from_json({"message": "m", "a": {str(i): i for i in range(300)}}, received_ns=1)


def test_not_an_object() -> None:
    with pytest.raises(ValidationError) as info:
        record_from_json([1], received_ns=1, index=0)
    assert info.value.details == {"field": "logs", "index": 0}


# The checked path and the fast one must agree: generated records near every limit and type edge.
_edge_text = st.one_of(st.text(max_size=8), st.text(alphabet="ab", min_size=1020, max_size=1030),
                       st.just("x" * 16_383), st.just("x" * 16_385), st.just("\U0001f600" * 16_385))
_edge_value = st.one_of(st.none(), _edge_text, st.integers(-2, 10**20), st.booleans(),
                        st.floats(allow_nan=True), st.lists(st.integers(), max_size=2))
_edge_ts = st.one_of(st.none(), st.integers(-5, 2**64), st.booleans(), st.floats(), st.just("2024-01-15T10:30:00Z"),
                     st.sampled_from([10**11 - 1, 10**11, 10**14 - 1, 10**14, 9_223_372_036_854, 9_223_372_036_855]))
_edge_labels = st.one_of(st.none(), st.integers(), st.dictionaries(
    st.one_of(st.text(max_size=4), st.just(""), st.just("k" * 129)), _edge_value, max_size=3),
    st.just({str(i): "v" for i in range(65)}))
_edge_record = st.fixed_dictionaries(
    {},
    optional={
        "message": _edge_value, "timestamp": _edge_ts, "level": st.one_of(_edge_value, st.sampled_from(
            ["warn", " Error ", "INFO", "nope"])), "service": _edge_value, "trace_id": _edge_value,
        "span_id": _edge_value, "user_id": _edge_value, "request_id": _edge_value, "stack_trace": _edge_value,
        "labels": _edge_labels, "extra": st.one_of(_edge_value, st.dictionaries(st.text(max_size=3), _edge_value,
                                                                                max_size=2)),
    },
)


@settings(max_examples=400, deadline=None)
@given(_edge_record, st.sampled_from([None, 7]))
def test_fast_record_path_equals_the_checked_path(obj: dict[str, object], index: int | None) -> None:
    from airisd.logparse import _checked_record, _fast_record

    try:
        expected: object = _checked_record(dict(obj), 5, index)
    except ValidationError as exc:
        expected = (exc.message, exc.details)
    try:
        fast = _fast_record(dict(obj), 5)
    except ValidationError:
        fast = None
    if fast is not None:  # the fast path answers only what the checked one accepts, identically
        assert fast == expected
    try:
        got: object = record_from_json(dict(obj), received_ns=5, index=index)
    except ValidationError as exc:
        got = (exc.message, exc.details)
    assert got == expected


# -- plain lines -----------------------------------------------------------------------------


def test_seed_plain_line() -> None:
    r = parse_line("2024-01-15 10:30:00 ERROR [user-api] Database connection failed", received_ns=RECEIVED)
    assert r.ts == parse_timestamp("2024-01-15T10:30:00Z")  # no offset: UTC
    assert (r.level, r.service, r.message) == ("ERROR", "user-api", "Database connection failed")


@pytest.mark.parametrize(
    ("line", "ts", "level", "service", "message"),
    [
        (
            "2024-01-15T10:30:00.123+09:00 warning: disk low",
            "2024-01-15T01:30:00.123Z",
            "WARN",
            "",
            "disk low",
        ),
        (
            "[2024-01-15 10:30:00,500] [info] [api] started",
            "2024-01-15T10:30:00.500Z",
            "INFO",
            "api",
            "started",
        ),
        (
            "2024-01-15 10:30:00 Something [x] happened",
            "2024-01-15T10:30:00Z",
            "UNKNOWN",
            "",
            "Something [x] happened",
        ),
        ("2024-01-15 10:30:00 [billing] no level", "2024-01-15T10:30:00Z", "UNKNOWN", "billing", "no level"),
        ("ERROR [svc] boom", None, "ERROR", "svc", "boom"),
        ("WARN: careful", None, "WARN", "", "careful"),
        ("Info about x", None, "UNKNOWN", "", "Info about x"),
        ("  at Database.connect()", None, "UNKNOWN", "", "  at Database.connect()"),
        ("2024-01-15 10:30:00", "2024-01-15T10:30:00Z", "UNKNOWN", "", "2024-01-15 10:30:00"),
        ("9999-99-99 99:99:99 ERROR bad time", None, "ERROR", "", "bad time"),
    ],
)
def test_plain_line_formats(line: str, ts: str | None, level: str, service: str, message: str) -> None:
    r = parse_line(line, received_ns=RECEIVED)
    assert r.ts == (RECEIVED if ts is None else parse_timestamp(ts))
    assert (r.level, r.service, r.message) == (level, service, message)


def test_logfmt_line() -> None:
    line = 'ts=2024-01-15T10:30:00Z level=warn msg="High memory\\n \\"usage\\"" service=api pct=93 '
    line += "trace_id=t1 x="
    r = parse_line(line, received_ns=RECEIVED)
    assert r.ts == parse_timestamp("2024-01-15T10:30:00Z")
    assert (r.level, r.message, r.service, r.trace_id) == ("WARN", 'High memory\n "usage"', "api", "t1")
    assert r.attributes == {"pct": "93", "x": ""}
    r = parse_line("level=error user=bob", received_ns=RECEIVED)
    assert (r.level, r.message, r.attributes) == ("ERROR", "level=error user=bob", {"user": "bob"})
    assert parse_line("a=b c", received_ns=RECEIVED).message == "a=b c"  # not logfmt: stored whole


def test_json_line() -> None:
    r = parse_line('{"msg":"hi","level":30,"time":1700000000000,"req":{"id":7}}', received_ns=RECEIVED)
    assert (r.message, r.level, r.ts, r.attributes) == ("hi", "INFO", 1700000000000 * 10**6, {"req.id": 7})
    r = parse_line(orjson.dumps(SEED_RECORD).decode(), received_ns=RECEIVED)
    assert r == record_from_json(dict(SEED_RECORD), received_ns=RECEIVED)
    for bad in ('{"no": "message"}', "{not json", '{"message": "x", "timestamp": "never"}', "[1, 2]"):
        r = parse_line(bad, received_ns=RECEIVED)
        assert (r.message, r.level, r.ts) == (bad, "UNKNOWN", RECEIVED)


def check_line(line: str) -> None:
    r = parse_line(line, received_ns=RECEIVED)
    assert r.level in LEVELS
    assert 0 <= r.ts <= 2**63 - 1
    assert isinstance(r.message, str)
    assert r.message or not line.strip()  # nothing is lost: a record always carries text


@given(st.text(max_size=300))
@settings(max_examples=1000)
def test_any_line_becomes_a_record(line: str) -> None:
    check_line(line)


@given(st.text(alphabet='0123456789-:TZ+ []{}="\\,.abcERWARNINFO\n', max_size=80))
@settings(max_examples=1000)
def test_near_miss_lines_become_records(line: str) -> None:
    check_line(line)


message_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"], exclude_characters="\x85"),
    min_size=1,
    max_size=80,
).filter(lambda s: s == s.strip() and not s.startswith("["))


@given(
    ts=st.integers(min_value=0, max_value=4_102_444_800 * 10**9),
    level=st.sampled_from(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]),
    service=st.one_of(
        st.just(""), st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1)
    ),
    message=message_text,
)
@settings(max_examples=500)
def test_seed_format_round_trips(ts: int, level: str, service: str, message: str) -> None:
    stamp = format_ts(ts)[:-1].replace("T", " ")  # "2024-01-15 10:30:00.123", no offset
    line = f"{stamp} {level} " + (f"[{service}] " if service else "") + message
    r = parse_line(line, received_ns=RECEIVED)
    assert (r.ts, r.level, r.service, r.message) == (ts - ts % 10**6, level, service, message)


@given(
    pairs=st.dictionaries(
        st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=8).filter(
            lambda k: (
                k
                not in {
                    "msg",
                    "message",
                    "level",
                    "lvl",
                    "severity",
                    "ts",
                    "time",
                    "timestamp",
                    "service",
                    "trace_id",
                    "span_id",
                    "user_id",
                    "request_id",
                    "stack_trace",
                }
            )
        ),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20),
        max_size=5,
    ),
    message=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
)
def test_logfmt_round_trips(pairs: dict[str, str], message: str) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    line = " ".join([f"level=error msg={quote(message)}", *(f"{k}={quote(v)}" for k, v in pairs.items())])
    if "\r" in line:  # a line ending inside a line is not a line
        return
    r = parse_line(line, received_ns=RECEIVED)
    assert (r.level, r.message or line, r.attributes) == ("ERROR", message or line, pairs)


def test_plain_body_splits_lines_and_skips_blank_ones() -> None:
    body = "2024-01-15 10:30:00 ERROR [user-api] Database connection failed\r\n\n   \nplain words\n"
    recs = parse_plain_body(body, received_ns=RECEIVED)
    assert [(r.level, r.message) for r in recs] == [
        ("ERROR", "Database connection failed"),
        ("UNKNOWN", "plain words"),
    ]
    assert parse_plain_body("", received_ns=RECEIVED) == []
    # Only \n ends a line: a Unicode line separator inside a message stays there.
    assert [r.message for r in parse_plain_body("a\u2028b", received_ns=RECEIVED)] == ["a\u2028b"]


def test_over_long_line_is_refused_with_its_line_number() -> None:
    with pytest.raises(ValidationError) as info:
        parse_plain_body("ok\n" + "x" * (MAX_MESSAGE_BYTES + 1), received_ns=RECEIVED)
    assert info.value.details == {"field": "body", "line": 2}


# Records of the usual shape, some just past a bound, so that fast_batch takes many of them.
_usual_record = st.fixed_dictionaries(
    {"message": st.one_of(st.text(max_size=12), st.just("x" * 16_384), st.just("x" * 16_385))},
    optional={
        "timestamp": st.one_of(st.none(), st.integers(-2, 10**15), st.sampled_from(
            [10**11 - 1, 10**11, 10**14 - 1, 10**14, 9_223_372_036_854, 9_223_372_036_855])),
        "level": st.one_of(st.none(), st.sampled_from(["warn", " Error ", "INFO", "nope", "", "30"])),
        "service": st.one_of(st.text(max_size=6), st.just("s" * 1024), st.just("s" * 1025)),
        "request_id": st.text(max_size=6),
        "labels": st.dictionaries(st.one_of(st.text(max_size=3), st.just("k" * 128), st.just("k" * 129)),
                                  st.text(max_size=3), max_size=3),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_usual_record, _usual_record, _edge_record), max_size=4),
       st.sampled_from([{}, {}, {"extra": 1}]))
def test_fast_batch_equals_the_dict_path(recs: list[dict[str, object]], top: dict[str, object]) -> None:
    from airisd.logparse import fast_batch

    body = json.dumps({"logs": recs, **top}).encode()  # stdlib: big ints and NaN stay in the text
    fast = fast_batch(body, received_ns=5, max_records=3)
    if fast is not None:  # only batches the dict path accepts, giving the same records
        assert not top and 1 <= len(recs) <= 3
        assert fast == [record_from_json(r, received_ns=5, index=i) for i, r in enumerate(orjson.loads(body)["logs"])]


def test_fast_batch_takes_the_usual_shapes_and_the_last_of_repeated_keys() -> None:
    from airisd.logparse import fast_batch

    seed = {"timestamp": 1705314600000, "level": "warning", "message": "Database connection failed",
            "service": "user-api", "trace_id": "abc123", "span_id": "def456", "labels": {"env": "prod"},
            "stack_trace": "at x", "user_id": "user_12345", "request_id": "req_67890"}
    got = fast_batch(orjson.dumps({"logs": [seed, {"message": "m", "timestamp": 1705314600}]}), received_ns=5,
                     max_records=10)
    assert got == [record_from_json(seed, received_ns=5), record_from_json({"message": "m", "timestamp": 1705314600},
                                                                          received_ns=5)]
    assert fast_batch(b'{"logs":[{"message":"a","message":"b"}]}', received_ns=5, max_records=1) == [
        record_from_json({"message": "b"}, received_ns=5)]  # as orjson (and JSON.parse) read it
    # what it leaves to the dict path: attributes, string timestamps, nulls, an empty batch
    for odd in ({"message": "m", "http": {"status": 500}}, {"message": "m", "timestamp": "2024-01-15T10:30:00Z"},
                {"message": "m", "service": None}):
        assert fast_batch(orjson.dumps({"logs": [odd]}), received_ns=5, max_records=10) is None
    assert fast_batch(b'{"logs":[]}', received_ns=5, max_records=10) is None
