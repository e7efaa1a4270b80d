"""Query-parameter grammars: label filters (``labels=host:web-01,region:us``) and intervals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.errors import ValidationError
from airisd.querysyntax import MAX_BUCKETS, format_label_filter, parse_interval, parse_label_filter
from airisd.timeparse import NS_PER_S

HOUR = 3600 * NS_PER_S
keys = st.text(st.characters(exclude_characters=":", codec="utf-8"), min_size=1, max_size=20).filter(
    lambda k: k.strip() == k and k != ""
)
values = st.text(max_size=30)
label_dicts = st.dictionaries(keys, values, max_size=8)


# -- label filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("host:web-server-01", {"host": "web-server-01"}),
        ("host:web-01,region:us-east-1", {"host": "web-01", "region": "us-east-1"}),
        ("host:web-01, region:us-east-1", {"host": "web-01", "region": "us-east-1"}),  # space after the comma
        ("url:http://x:80/a", {"url": "http://x:80/a"}),  # split at the first colon only
        (r"tags:a\,b", {"tags": "a,b"}),
        (r"path:C:\temp", {"path": "C:\\temp"}),  # a backslash before anything but , or \ is itself
        (r"path:C:\\,host:a", {"path": "C:\\", "host": "a"}),
        ("host:", {"host": ""}),
        ("주소:서울", {"주소": "서울"}),
    ],
)
def test_parse_label_filter(text: str, expected: dict[str, str]) -> None:
    assert parse_label_filter(text) == expected


@given(label_dicts)
def test_label_filter_round_trips(labels: dict[str, str]) -> None:
    assert parse_label_filter(format_label_filter(labels)) == labels


@given(label_dicts)
def test_formatted_filter_has_one_item_per_label(labels: dict[str, str]) -> None:
    text = format_label_filter(labels)
    assert (text == "") == (not labels)
    # Unescaped commas separate exactly len(labels) items.
    unescaped = text.replace("\\\\", "").replace("\\,", "")
    assert unescaped.count(",") == max(0, len(labels) - 1)


@pytest.mark.parametrize(
    "text",
    [
        "host",
        "host:a,region",
        ":value",
        " :value",
        "host:a,,region:b",
        ",",
        "host:a,",
        "host:a,host:b",
        "host:a, host :b",
    ],
)
def test_malformed_label_filters_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_label_filter(text)
    assert exc.value.details["field"] == "labels"
    assert exc.value.code == "VALIDATION_ERROR"


def test_too_many_label_filters() -> None:
    text = ",".join(f"k{i}:v" for i in range(65))
    with pytest.raises(ValidationError, match="at most 64"):
        parse_label_filter(text)
    assert len(parse_label_filter(text, max_items=65)) == 65


def test_field_name_is_the_callers() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_label_filter("nope", field="tags")
    assert exc.value.details == {"field": "tags"}
    assert exc.value.message.startswith("tags:")


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_is_a_validation_error(text: str) -> None:
    try:
        parsed = parse_label_filter(text)
    except ValidationError as exc:
        assert exc.details["field"] == "labels"
        return
    assert all(k and k == k.strip() for k in parsed)
    assert parse_label_filter(format_label_filter(parsed)) == parsed


# -- intervals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secs"),
    [
        ("1s", 1),
        ("10s", 10),
        ("1m", 60),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("1d", 86400),
        ("1w", 604800),
        ("1.5m", 90),
        ("2000ms", 2),
        ("1h30m", 5400),
    ],
)
def test_intervals(text: str, secs: int) -> None:
    assert parse_interval(text, from_ns=0, to_ns=HOUR) == secs * NS_PER_S


@pytest.mark.parametrize(
    "text", ["", "1", "60", "abc", "1x", "0s", "500ms", "1.5s", "1500ms", "-1m", "1 m", "m"]
)
def test_bad_intervals_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_interval(text, from_ns=0, to_ns=HOUR)
    assert exc.value.details == {"field": "interval"}


def test_too_many_buckets_is_refused_not_computed() -> None:
    span = MAX_BUCKETS * NS_PER_S
    assert parse_interval("1s", from_ns=0, to_ns=span) == NS_PER_S  # exactly the limit is fine
    with pytest.raises(ValidationError, match="widen the interval"):
        parse_interval("1s", from_ns=0, to_ns=span + NS_PER_S)
    assert parse_interval("1m", from_ns=0, to_ns=span + NS_PER_S) == 60 * NS_PER_S


@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_any_whole_number_of_seconds_is_an_interval(secs: int) -> None:
    assert parse_interval(f"{secs}s", from_ns=0, to_ns=secs * NS_PER_S) == secs * NS_PER_S


@given(st.text(max_size=30), st.integers(min_value=0, max_value=HOUR * 24 * 400))
def test_arbitrary_interval_text_is_whole_seconds_or_refused(text: str, span: int) -> None:
    try:
        step = parse_interval(text, from_ns=0, to_ns=span)
    except ValidationError as exc:
        assert exc.details["field"] == "interval"
        return
    assert step >= NS_PER_S
    assert step % NS_PER_S == 0
    assert span // step <= MAX_BUCKETS
