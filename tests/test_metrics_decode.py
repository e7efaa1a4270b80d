"""Decoding the seed's metric JSON (plugins/inputs/http_metrics/decode.py): every bad input of
issue 2 is a ValidationError naming the field (and the batch index), never another exception."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from airisd_plugins.inputs.http_metrics.decode import Limits, decode_batch, decode_point
from hypothesis import given
from hypothesis import strategies as st

from airisd.errors import ValidationError
from airisd.timeparse import NS_PER_MS, NS_PER_S

NOW = 1_705_314_600 * NS_PER_S  # 2024-01-15T10:30:00Z
LIMITS = Limits()


def one(obj: Any) -> bytes:
    return obj if isinstance(obj, bytes) else orjson.dumps(obj)


def point(**kw: Any) -> dict[str, Any]:
    return {"name": "cpu.usage", "value": 75.5, **kw}


def refused(body: bytes, *, batch: bool = False, limits: Limits = LIMITS) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        (decode_batch if batch else decode_point)(body, now_ns=NOW, limits=limits)
    err = exc.value
    assert err.code == "VALIDATION_ERROR"
    assert err.status == 400
    assert err.message
    return err


# -- accepted --------------------------------------------------------------------------------------


def test_seed_single_point() -> None:
    body = b"""{"name": "cpu.usage", "value": 75.5, "timestamp": "2024-01-15T10:30:00Z",
                "labels": {"host": "web-server-01", "region": "us-east-1"}}"""
    p = decode_point(body, now_ns=NOW + 5, limits=LIMITS)
    assert (p.name, p.value, p.ts) == ("cpu.usage", 75.5, NOW)
    assert p.labels == {"host": "web-server-01", "region": "us-east-1"}


def test_seed_batch_without_timestamps_takes_the_receive_time() -> None:
    body = b"""{"metrics": [
        {"name": "memory.usage", "value": 85.2, "labels": {"host": "web-server-01"}},
        {"name": "disk.usage", "value": 45.8, "labels": {"host": "web-server-01", "mount": "/"}}]}"""
    points = decode_batch(body, now_ns=NOW, limits=LIMITS)
    assert [(p.name, p.value, p.ts) for p in points] == [
        ("memory.usage", 85.2, NOW),
        ("disk.usage", 45.8, NOW),
    ]
    assert points[1].labels == {"host": "web-server-01", "mount": "/"}


@pytest.mark.parametrize(
    "ts",
    [
        "2024-01-15T10:30:00Z",
        "2024-01-15T19:30:00+09:00",
        "2024-01-15T10:30:00.000Z",
        1705314600,
        1705314600000,
        1705314600.0,
        "1705314600",
    ],
)
def test_timestamp_forms(ts: Any) -> None:
    assert decode_point(one(point(timestamp=ts)), now_ns=NOW, limits=LIMITS).ts == NOW


def test_fractional_epoch_is_exact_and_null_means_now() -> None:
    assert decode_point(
        b'{"name":"a","value":1,"timestamp":1705314600.123}', now_ns=NOW, limits=LIMITS
    ).ts == (NOW + 123 * NS_PER_MS)
    assert decode_point(one(point(timestamp=None, labels=None)), now_ns=NOW, limits=LIMITS).ts == NOW


def test_integer_values_and_extremes_are_floats() -> None:
    assert decode_point(one(point(value=3)), now_ns=NOW, limits=LIMITS).value == 3.0
    assert decode_point(b'{"name":"a","value":-1.7e308}', now_ns=NOW, limits=LIMITS).value == -1.7e308
    assert decode_point(b'{"name":"a","value":1e-320}', now_ns=NOW, limits=LIMITS).value == 1e-320


def test_limits_are_inclusive() -> None:
    labels = {f"k{i:03d}"[:3] + str(i): "v" * 1024 for i in range(64)}
    p = decode_point(one(point(name="n" * 256, labels=labels)), now_ns=NOW, limits=LIMITS)
    assert len(p.name) == 256 and len(p.labels) == 64
    future = NOW + 7 * 86400 * NS_PER_S
    assert decode_point(one(point(timestamp=future // NS_PER_MS)), now_ns=NOW, limits=LIMITS).ts == future


# -- refused: one point -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"{", "body"),
        (b"not json", "body"),
        (b'{"name": "a", "value": 1,}', "body"),
        (b'{"name":"a","value":1}{}', "body"),
        (b"\xff\xfe\x00", "body"),
        (b"null", "body"),
        (b"[]", "body"),
        (b'"cpu"', "body"),
        (b'{"value": 1}', "name"),
        (b'{"name": "a"}', "value"),
        (b'{"name": "a", "value": 1, "unit": "%"}', "unit"),
        (one(point(value="abc")), "value"),
        (one(point(value="75.5")), "value"),
        (one(point(value=True)), "value"),
        (one(point(value=None)), "value"),
        (one(point(value=[1])), "value"),
        (b'{"name": "a", "value": NaN}', "body"),  # JSON has no NaN literal
        (b'{"name": "a", "value": Infinity}', "body"),
        (b'{"name": "a", "value": 1e999}', "value"),  # decodes to inf: refused
        (b'{"name": "a", "value": -1e999}', "value"),
        (one(point(name="")), "name"),
        (one(point(name="n" * 257)), "name"),
        (one(point(name=" cpu")), "name"),
        (one(point(name="cpu\n")), "name"),
        (one(point(name="cpu\x00usage")), "name"),
        (one(point(name=5)), "name"),
        (one(point(labels=[])), "labels"),
        (one(point(labels={"a": 1})), "labels"),
        (one(point(labels={"a": None})), "labels"),
        (one(point(labels={f"k{i}": "v" for i in range(65)})), "labels"),
        (one(point(labels={"k" * 129: "v"})), "labels"),
        (one(point(labels={"": "v"})), "labels"),
        (one(point(labels={"a\tb": "v"})), "labels"),
        (one(point(labels={"k": "v" * 1025})), "labels"),
        (one(point(timestamp="yesterday")), "timestamp"),
        (one(point(timestamp="2024-13-45T99:00:00Z")), "timestamp"),
        (one(point(timestamp="1900-01-01T00:00:00Z")), "timestamp"),
        (one(point(timestamp="10000-01-01T00:00:00Z")), "timestamp"),
        (one(point(timestamp="2099-01-01T00:00:00Z")), "timestamp"),  # absurdly far in the future
        (one(point(timestamp=-1)), "timestamp"),
        (b'{"name": "a", "value": 1, "timestamp": 10000000000000000000000000}', "timestamp"),
        (one(point(timestamp=True)), "timestamp"),
        (one(point(timestamp=[2024])), "timestamp"),
        (b'{"name": "a", "value": 1, "timestamp": 1e999}', "timestamp"),
    ],
)
def test_bad_point_names_the_field(body: bytes, field: str) -> None:
    err = refused(body)
    assert err.details["field"] == field
    assert "index" not in err.details


def test_limits_come_from_the_config() -> None:
    tight = Limits(
        max_name_length=3, max_labels=1, max_label_key_length=2, max_label_value_length=2, max_future_secs=0
    )
    assert refused(one(point(name="abcd")), limits=tight).details["field"] == "name"
    assert (
        refused(one(point(name="a", labels={"a": "b", "c": "d"})), limits=tight).details["field"] == "labels"
    )
    assert refused(one(point(name="a", labels={"abc": "b"})), limits=tight).details["field"] == "labels"
    assert refused(one(point(name="a", labels={"a": "bcd"})), limits=tight).details["field"] == "labels"
    assert refused(one(point(name="a", timestamp=(NOW + NS_PER_S) // NS_PER_MS)), limits=tight).details == {
        "field": "timestamp"
    }


# -- refused: batches -----------------------------------------------------------------------------


def test_batch_with_bad_points_lists_every_bad_index() -> None:
    body = one(
        {
            "metrics": [
                point(),
                point(value="abc"),
                point(name=""),
                point(),
                point(timestamp="nope"),
                7,
                {"value": 1},
                point(labels={"k": "v" * 2000}),
            ]
        }
    )
    err = refused(body, batch=True)
    assert err.details["index"] == 1
    assert err.details["field"] == "value"
    found = [(e["index"], e["field"]) for e in err.details["errors"]]
    assert found == [(1, "value"), (2, "name"), (4, "timestamp"), (5, "metrics"), (6, "name"), (7, "labels")]
    assert all(e["message"].startswith(f"metrics[{e['index']}]") for e in err.details["errors"])
    assert "nothing was stored" in err.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "body"),
        (b"[]", "body"),
        (b"{}", "metrics"),
        (b'{"metrics": {}}', "metrics"),
        (b'{"metrics": null}', "metrics"),
        (b'{"metrics": []}', "metrics"),
        (b'{"metrics": [], "extra": 1}', "extra"),
        (one(point()), "name"),  # a single point posted to /metrics/batch
    ],
)
def test_bad_batch_envelope(body: bytes, field: str) -> None:
    err = refused(body, batch=True)
    assert err.details["field"] == field


def test_batch_size_limit() -> None:
    body = one({"metrics": [point()] * 4})
    err = refused(body, batch=True, limits=Limits(max_batch_points=3))
    assert err.details == {"field": "metrics"}
    assert len(decode_batch(body, now_ns=NOW, limits=Limits(max_batch_points=4))) == 4


def test_many_errors_are_capped_in_details() -> None:
    err = refused(one({"metrics": [point(value="x")] * 120}), batch=True)
    assert len(err.details["errors"]) == 50
    assert err.message.startswith("120 of 120 points")


# -- fuzz -------------------------------------------------------------------------------------------

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | int64 | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
point_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=300) | json_values,
        "value": st.floats() | int64 | json_values,
        "timestamp": int64 | st.floats() | st.text(max_size=30) | json_values,
        "labels": st.dictionaries(st.text(max_size=140), st.text(max_size=40), max_size=70) | json_values,
        "other": json_values,
    },
)


def check_valid(p: Any) -> None:
    assert 1 <= len(p.name) <= LIMITS.max_name_length
    assert math.isfinite(p.value)
    assert 0 <= p.ts <= NOW + LIMITS.max_future_secs * NS_PER_S
    assert len(p.labels) <= LIMITS.max_labels
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in p.labels.items())


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_validation_error(body: bytes) -> None:
    for decode in (decode_point, decode_batch):
        try:
            result = decode(body, now_ns=NOW, limits=LIMITS)
        except ValidationError as exc:
            assert isinstance(exc.details.get("field"), str)
            continue
        for p in result if isinstance(result, list) else [result]:
            check_valid(p)


@given(point_like)
def test_arbitrary_point_objects_are_valid_or_refused_by_field(obj: dict[str, Any]) -> None:
    body = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS) if obj else b"{}"
    try:
        p = decode_point(body, now_ns=NOW, limits=LIMITS)
    except ValidationError as exc:
        assert exc.details["field"] in {"body", "name", "value", "timestamp", "labels", "other"}
        return
    check_valid(p)
    assert p.name == obj["name"]


@given(st.lists(point_like, min_size=1, max_size=6))
def test_arbitrary_batches_are_all_valid_or_name_each_bad_index(objs: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"metrics": objs}, option=orjson.OPT_NON_STR_KEYS)
    try:
        points = decode_batch(body, now_ns=NOW, limits=LIMITS)
    except ValidationError as exc:
        indexes = [e["index"] for e in exc.details["errors"]]
        assert indexes == sorted(set(indexes))
        assert exc.details["index"] == indexes[0]
        for i in set(range(len(objs))) - set(indexes):  # every point not listed is fine on its own
            check_valid(
                decode_point(orjson.dumps(objs[i], option=orjson.OPT_NON_STR_KEYS), now_ns=NOW, limits=LIMITS)
            )
        return
    assert len(points) == len(objs)
    for p in points:
        check_valid(p)


@given(st.lists(point_like, min_size=1, max_size=6))
def test_batches_equal_their_points_decoded_one_by_one_also_when_seen_before(objs: list[dict[str, Any]]) -> None:
    """The fast path remembers the names and label sets it has checked (per Limits) from batch to batch:
    a batch, decoded twice under each limits in turn, is what its points are on their own."""
    body = orjson.dumps({"metrics": objs}, option=orjson.OPT_NON_STR_KEYS)
    for limits in (LIMITS, Limits(max_labels=1, max_name_length=3), LIMITS):
        one_by_one: list[Any] = []
        for obj in objs:
            try:
                one_by_one.append(decode_point(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), now_ns=NOW,
                                               limits=limits))
            except ValidationError:
                one_by_one.append(None)
        for _ in range(2):
            try:
                points = decode_batch(body, now_ns=NOW, limits=limits)
            except ValidationError:
                assert None in one_by_one
                continue
            assert points == one_by_one


def test_a_series_checked_under_loose_limits_is_checked_again_under_strict_ones() -> None:
    body = orjson.dumps({"metrics": [{"name": "cpu_usage", "value": 1, "labels": {"a": "1", "b": "2"}}] * 3})
    assert len(decode_batch(body, now_ns=NOW, limits=LIMITS)) == 3
    for strict in (Limits(max_labels=1), Limits(max_name_length=3)):
        with pytest.raises(ValidationError):
            decode_batch(body, now_ns=NOW, limits=strict)
    assert len(decode_batch(body, now_ns=NOW, limits=LIMITS)) == 3


def test_labels_written_differently_decode_to_the_same_series() -> None:
    """The fast path keys series by the labels' JSON text: other spellings of the same labels, null,
    {} and no labels at all still give the points the one-by-one decoding gives."""
    body = (b'{"metrics": [{"name": "m", "value": 1, "labels": {"a": "1", "b": "2"}},'
            b'{"name": "m", "value": 2, "labels": { "b" : "2", "a" : "1" }},'
            b'{"name": "m", "value": 3, "labels": null}, {"name": "m", "value": 4, "labels": {}},'
            b'{"name": "m", "value": 5}, {"name": "m", "value": 6, "labels": {"a": "\\u0031"}}]}')
    points = decode_batch(body, now_ns=NOW, limits=LIMITS)
    assert [p.labels for p in points] == [{"a": "1", "b": "2"}, {"a": "1", "b": "2"}, {}, {}, {}, {"a": "1"}]
    with pytest.raises(ValidationError) as info:
        decode_batch(b'{"metrics": [{"name": "m", "value": 1, "labels": {"a": 1}}]}', now_ns=NOW, limits=LIMITS)
    assert info.value.details["field"] == "labels"
