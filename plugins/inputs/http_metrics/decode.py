"""Decoding the seed's metric JSON into Points, with errors that name the field and the index."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from airisd.errors import ValidationError
from airisd.model import Point
from airisd.timeparse import parse_timestamp


class PointIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    value: float
    timestamp: str | int | float | None = None
    labels: dict[str, str] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    metrics: list[PointIn]


class RawBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    metrics: list[msgspec.Raw]


# The fast path's view of a batch: labels as their JSON text, so that a series' labels are decoded,
# checked and hashed once per batch instead of once per point (a dict and a tuple of its items each).
_NO_LABELS = msgspec.Raw(b"null")


class _RawLabelsPointIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    value: float
    timestamp: str | int | float | None = None
    labels: msgspec.Raw = _NO_LABELS


class _RawLabelsBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    metrics: list[_RawLabelsPointIn]


_FAST_BATCH = msgspec.json.Decoder(_RawLabelsBatchIn)
_LABELS = msgspec.json.Decoder(dict[str, str] | None)
_POINT = msgspec.json.Decoder(PointIn)
_BATCH = msgspec.json.Decoder(BatchIn)
_RAW_BATCH = msgspec.json.Decoder(RawBatchIn)
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(.+?)`")
_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_INDEX = re.compile(r"^\.metrics\[(\d+)\](?:\.(.*))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Limits(msgspec.Struct, kw_only=True):
    max_name_length: int = 256
    max_labels: int = 64
    max_label_key_length: int = 128
    max_label_value_length: int = 1024
    max_future_secs: int = 7 * 86400
    max_batch_points: int = 50_000


def _decode_error(exc: msgspec.DecodeError, *, batch: bool) -> ValidationError:
    m = _AT.match(str(exc))
    message, path = (m.group(1), m.group(2)) if m else (str(exc), None)
    details: dict[str, Any] = {}
    if path:
        im = _INDEX.match(path) if batch else None
        if im:
            details["index"] = int(im.group(1))
            details["field"] = (im.group(2) or "").split(".")[0] or "metrics"
        else:
            details["field"] = path.lstrip(".").split(".")[0].split("[")[0] or "body"
    else:
        details["field"] = "body"
    named = _NAMED_FIELD.match(message)
    if named:  # {"value": 1} lacks `name`: that is the field to name, not the object around it
        details["field"] = named.group(1)
    if message.startswith("JSON is malformed") or message.startswith("Input data was truncated"):
        return ValidationError(f"malformed JSON: {message}", details={"field": "body"})
    where = f"metrics[{details['index']}].{details['field']}" if "index" in details else details["field"]
    return ValidationError(f"{where}: {message}", details=details)


def check_point(p: PointIn, *, now_ns: int, limits: Limits, index: int | None) -> Point:
    def bad(field: str, message: str) -> ValidationError:
        details: dict[str, Any] = {"field": field}
        where = field
        if index is not None:
            details["index"] = index
            where = f"metrics[{index}].{field}"
        return ValidationError(f"{where}: {message}", details=details)

    if not p.name or len(p.name) > limits.max_name_length:
        raise bad("name", f"must be 1 to {limits.max_name_length} characters")
    if _CONTROL.search(p.name) or p.name != p.name.strip():
        raise bad("name", "must not contain control characters or surrounding spaces")
    if not math.isfinite(p.value):
        raise bad("value", "must be a finite number (NaN and Infinity are refused)")
    if p.timestamp is None:
        ts = now_ns
    else:
        try:
            ts = parse_timestamp(p.timestamp)
        except ValueError as exc:
            raise bad("timestamp", str(exc)) from None
        if ts > now_ns + limits.max_future_secs * 1_000_000_000:
            raise bad("timestamp", f"is more than {limits.max_future_secs} s in the future")
    labels = p.labels or {}
    if len(labels) > limits.max_labels:
        raise bad("labels", f"has {len(labels)} labels; at most {limits.max_labels} are allowed")
    for k, v in labels.items():
        if not k or len(k) > limits.max_label_key_length or _CONTROL.search(k):
            raise bad("labels",
                      f"label key {k[:40]!r} must be 1 to {limits.max_label_key_length} printable characters")
        if len(v) > limits.max_label_value_length:
            raise bad("labels", f"label {k[:40]!r} is longer than {limits.max_label_value_length} characters")
    return Point(name=p.name, value=p.value, ts=ts, labels=labels)


def decode_point(body: bytes, *, now_ns: int, limits: Limits) -> Point:
    try:
        p = _POINT.decode(body)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, batch=False) from None
    return check_point(p, now_ns=now_ns, limits=limits, index=None)


def decode_batch(body: bytes, *, now_ns: int, limits: Limits) -> list[Point]:
    """All points, or a ValidationError listing every bad one (the whole batch is refused: a
    client that retries a partly stored batch would otherwise duplicate the good half)."""
    try:
        fast_items: list[_RawLabelsPointIn] | None = _FAST_BATCH.decode(body).metrics
    except msgspec.DecodeError:
        fast_items = None
    if fast_items and len(fast_items) <= limits.max_batch_points:
        fast = _fast_points(fast_items, now_ns=now_ns, limits=limits)
        if fast is not None:
            return fast
    # Something is wrong, or unusual: decode and check point by point, naming every bad one.
    items: list[PointIn | ValidationError]
    try:
        items = list(_BATCH.decode(body).metrics)
    except msgspec.DecodeError as exc:
        items = _decode_one_by_one(body, exc)
    if not items:
        raise ValidationError("metrics: the batch is empty", details={"field": "metrics"})
    if len(items) > limits.max_batch_points:
        raise ValidationError(f"metrics: {len(items)} points; at most {limits.max_batch_points} per batch",
                              details={"field": "metrics"})
    points: list[Point] = []
    errors: list[dict[str, Any]] = []
    for i, p in enumerate(items):
        try:
            if isinstance(p, ValidationError):
                raise p
            points.append(check_point(p, now_ns=now_ns, limits=limits, index=i))
        except ValidationError as exc:
            errors.append({**exc.details, "message": exc.message})
    if errors:
        first = errors[0]
        raise ValidationError(
            f"{len(errors)} of {len(items)} points are invalid; nothing was stored. "
            f"First: {first['message']}",
            details={"field": first.get("field"), "index": first.get("index"), "errors": errors[:50]},
        )
    return points


_MS_LO, _MS_HI = 100_000_000_000, 100_000_000_000_000  # the epoch-ms range of parse_timestamp


class _Checked:
    """Names and label sets that passed check_point under one Limits: series repeat from batch to
    batch, so each is checked once per process, not once per batch (bounded: cleared when full)."""

    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.label_sets: set[bytes] = set()  # the labels' JSON text

    def make_room(self) -> None:
        if len(self.names) + len(self.label_sets) > self.MAX_ENTRIES:
            self.names.clear()
            self.label_sets.clear()


_CHECKED: dict[tuple[int, ...], _Checked] = {}


def _fast_points(items: list[_RawLabelsPointIn], *, now_ns: int, limits: Limits) -> list[Point] | None:
    """The common case, cheaply: names and label sets repeat, so each distinct one is decoded and
    checked once (by check_point itself, so the rules are the same), and epoch-ms integers skip
    parse_timestamp. Any doubt returns None and the caller takes the slow path, which names every
    bad point. Points of one batch with the same labels text share one dict (they are one series)."""
    max_ts = now_ns + limits.max_future_secs * 1_000_000_000
    limits_key = msgspec.structs.astuple(limits)
    checked = _CHECKED.get(limits_key)
    if checked is None:
        checked = _CHECKED[limits_key] = _Checked()
    checked.make_room()
    names, checked_sets = checked.names, checked.label_sets
    label_sets: dict[bytes, dict[str, str]] = {}
    out: list[Point] = []
    append = out.append
    isfinite = math.isfinite
    for p in items:
        if not isfinite(p.value):
            return None
        t = p.timestamp
        if t is None:
            ts = now_ns
        elif type(t) is int and _MS_LO <= t < _MS_HI:
            ts = t * 1_000_000
        else:
            try:
                ts = parse_timestamp(t)
            except ValueError:
                return None
        if ts > max_ts:
            return None
        name = p.name
        text = bytes(p.labels)
        labels = label_sets.get(text)
        if labels is None:
            try:
                labels = _LABELS.decode(text) or {}
            except msgspec.DecodeError:
                return None
            if text not in checked_sets:
                if not _passes(PointIn(name=name, value=p.value, labels=labels), now_ns, limits):
                    return None
                checked_sets.add(text)
                names.add(name)
            label_sets[text] = labels
        if name not in names:
            if not _passes(PointIn(name=name, value=p.value, labels=labels), now_ns, limits):
                return None
            names.add(name)
        append(Point(name=name, value=p.value, ts=ts, labels=labels))
    return out


def _passes(p: PointIn, now_ns: int, limits: Limits) -> bool:
    try:
        check_point(p, now_ns=now_ns, limits=limits, index=None)
    except ValidationError:
        return False
    return True


def _decode_one_by_one(body: bytes, first: msgspec.DecodeError) -> list[PointIn | ValidationError]:
    """The fast decode stops at the first bad point; decode point by point so the 400 lists every
    bad index, not just the first. A body that is not a batch at all is reported as it is."""
    try:
        raw = _RAW_BATCH.decode(body)
    except msgspec.DecodeError:
        raise _decode_error(first, batch=True) from None
    out: list[PointIn | ValidationError] = []
    for i, item in enumerate(raw.metrics):
        try:
            out.append(_POINT.decode(item))
        except msgspec.DecodeError as exc:
            err = _decode_error(exc, batch=False)
            field = err.details.get("field", "body")
            if field == "body":  # the item itself is not an object
                out.append(ValidationError(f"metrics[{i}]: {err.message.removeprefix('body: ')}",
                                           details={"field": "metrics", "index": i}))
            else:
                out.append(ValidationError(f"metrics[{i}].{err.message}",
                                           details={"field": field, "index": i}))
    return out
