"""Timestamps and durations as users write them (airisd.timeparse)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.timeparse import (
    MAX_DURATION_NS,
    MAX_TS_NS,
    NS_PER_MS,
    NS_PER_S,
    format_duration,
    format_ts,
    parse_duration,
    parse_timestamp,
)

SEED_TS = 1_705_314_600 * NS_PER_S  # 2024-01-15T10:30:00Z, the seed's example
# Instants that format_ts can spell: 1970 up to the int64 limit in 2262, at ms precision.
ms_instants = st.integers(min_value=0, max_value=MAX_TS_NS // NS_PER_MS).map(lambda ms: ms * NS_PER_MS)


# -- timestamps: accepted forms -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-15T10:30:00Z",
        "2024-01-15T10:30:00z",
        "2024-01-15t10:30:00Z",
        "2024-01-15 10:30:00Z",
        "2024-01-15T10:30:00",  # no offset: UTC
        "2024-01-15T10:30:00.000Z",
        "2024-01-15T10:30:00.000000000Z",
        "2024-01-15T19:30:00+09:00",
        "2024-01-15T19:30:00+0900",
        "2024-01-15T05:30:00-05:00",
        "2024-01-15T10:30:00+00:00",
        "  2024-01-15T10:30:00Z  ",
        1705314600,
        1705314600.0,
        1705314600000,
        1705314600000000,
        1705314600000000000,
        "1705314600",
        "1705314600000",
        "1705314600.0",
    ],
)
def test_seed_instant_in_every_accepted_form(text: str | int | float) -> None:
    assert parse_timestamp(text) == SEED_TS


def test_fractions_and_date_only() -> None:
    assert parse_timestamp("2024-01-15T10:30:00.5Z") == SEED_TS + 500 * NS_PER_MS
    assert parse_timestamp("2024-01-15T10:30:00,123456789Z") == SEED_TS + 123_456_789
    assert parse_timestamp("2024-01-15") == parse_timestamp("2024-01-15T00:00:00Z")
    assert parse_timestamp(1705314600.25) == SEED_TS + 250 * NS_PER_MS
    assert parse_timestamp(0) == 0
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0


def test_leap_second_folds_onto_the_last_nanosecond() -> None:
    assert parse_timestamp("2016-12-31T23:59:60Z") == parse_timestamp("2017-01-01T00:00:00Z") - 1


def test_format_ts_is_rfc3339_utc_with_milliseconds() -> None:
    assert format_ts(SEED_TS) == "2024-01-15T10:30:00.000Z"
    assert format_ts(SEED_TS + 123_456_789) == "2024-01-15T10:30:00.123Z"  # truncated, not rounded
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"


@given(ms_instants)
def test_format_then_parse_round_trips_at_ms_precision(ns: int) -> None:
    text = format_ts(ns)
    assert parse_timestamp(text) == ns
    assert format_ts(parse_timestamp(text)) == text


@given(st.integers(min_value=0, max_value=MAX_TS_NS))
def test_format_truncates_to_the_millisecond(ns: int) -> None:
    assert parse_timestamp(format_ts(ns)) == ns - ns % NS_PER_MS


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2261, 12, 1)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_rfc3339_with_offset_is_the_utc_instant(local: datetime, offset_min: int) -> None:
    aware = local.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    text = aware.isoformat()  # e.g. 2024-01-15T19:30:00.123456+09:00
    utc = aware.astimezone(UTC)
    expected = (int(utc.replace(microsecond=0).timestamp()) * NS_PER_S) + utc.microsecond * 1000
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text.replace("+", " +") if "+" in text else text) == expected


@given(st.integers(min_value=10**8, max_value=MAX_TS_NS // NS_PER_S))
def test_epoch_units_are_told_apart_by_magnitude(secs: int) -> None:
    """Seconds, ms, µs and ns spellings of one instant all mean it (for instants after 1973)."""
    expected = secs * NS_PER_S
    assert parse_timestamp(secs) == expected
    assert parse_timestamp(secs * 1000) == expected
    assert parse_timestamp(secs * 1_000_000) == expected
    assert parse_timestamp(secs * NS_PER_S) == expected
    assert parse_timestamp(str(secs * 1000)) == expected


@given(st.integers(min_value=0, max_value=MAX_TS_NS // NS_PER_S - 1), st.integers(min_value=0, max_value=999))
def test_fractional_epoch_seconds_keep_their_milliseconds(secs: int, ms: int) -> None:
    """1705314600.123 (a JSON number or query text) is .123 exactly, not the binary float's .1229999."""
    text = f"{secs}.{ms:03d}"
    expected = secs * NS_PER_S + ms * NS_PER_MS
    assert parse_timestamp(float(text)) == expected
    assert parse_timestamp(text) == expected
    assert format_ts(parse_timestamp(float(text))).endswith(f".{ms:03d}Z")


# -- timestamps: refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "garbage",
        "now",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-15T25:00:00Z",
        "2024-01-15T10:61:00Z",
        "2024-01-15T10:30:00+24:00",
        "2024-01-15T10:30:00+05:60",
        "2024-01-15T10:30",
        "2024/01/15 10:30:00",
        "15-01-2024",
        "2024-01-15T10:30:00.Z",
        "2024-01-15T10:30:00.1234567890Z",
        "1e10",
        "0x10",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "-1",
        "-1705314600",
        "1969-12-31T23:59:59Z",
        "1900-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2263-01-01T00:00:00Z",
        "2262-04-11T23:47:16.854775808Z",
        float("nan"),
        float("inf"),
        float("-inf"),
        -1,
        -0.5,
        -1705314600,
        10**30,
        1e300,
        True,
        False,
        None,
        [1],
        {"a": 1},
        b"2024-01-15T10:30:00Z",
    ],
)
def test_refused_timestamps_raise_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)  # type: ignore[arg-type]


@given(st.text(max_size=60))
def test_arbitrary_text_only_ever_raises_value_error(text: str) -> None:
    try:
        ns = parse_timestamp(text)
    except ValueError:
        return
    assert 0 <= ns <= MAX_TS_NS


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2**80), max_value=2**80)
    )
)
def test_arbitrary_numbers_are_in_range_or_refused(value: float) -> None:
    try:
        ns = parse_timestamp(value)
    except ValueError:
        assert not (isinstance(value, float) and math.isfinite(value) and 0 <= value < 1e9)
        return
    assert 0 <= ns <= MAX_TS_NS


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("500ms", 500 * NS_PER_MS),
        ("1.5s", 1500 * NS_PER_MS),
        ("2m", 120 * NS_PER_S),
        ("1h", 3600 * NS_PER_S),
        ("1d", 86400 * NS_PER_S),
        ("10s", 10 * NS_PER_S),
        ("1w", 7 * 86400 * NS_PER_S),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("7ns", 7),
        ("1h30m", 5400 * NS_PER_S),
        (" 5m ", 300 * NS_PER_S),
        ("0s", 0),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "10",
        "1.5",
        "m",
        "1x",
        "1 m",
        "-1m",
        "+1m",
        "1m-",
        "1e3s",
        "abc",
        "1h 30m",
        "NaN",
        "infs",
        "3651d",
        "99999999999999h",
        "1" * 100 + "s",
    ],
)
def test_refused_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", [10, 1.5, None, True, b"1s"])
def test_duration_must_be_text(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_DURATION_NS))
def test_format_duration_round_trips(ns: int) -> None:
    text = format_duration(ns)
    assert parse_duration(text) == ns
    assert text[0].isdigit()


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (60 * NS_PER_S, "1m"),
        (90 * NS_PER_S, "90s"),
        (86400 * NS_PER_S, "1d"),
        (1500 * NS_PER_MS, "1500ms"),
        (0, "0ns"),
        (1, "1ns"),
    ],
)
def test_format_duration_picks_the_largest_exact_unit(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@given(st.text(max_size=30))
def test_arbitrary_duration_text_only_ever_raises_value_error(text: str) -> None:
    try:
        ns = parse_duration(text)
    except ValueError:
        return
    assert 0 <= ns <= MAX_DURATION_NS
