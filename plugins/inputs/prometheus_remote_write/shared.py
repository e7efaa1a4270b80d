"""Helpers the protocol inputs share (remote_write, Loki, Influx, OTLP metrics, the scraper).

They live here rather than in ``airisd/`` because only these inputs use them; move them to the
core once a second caller outside the protocol inputs appears.
"""

from __future__ import annotations

import math
import re

import cramjam
from starlette.requests import Request

from airisd.errors import PayloadTooLarge
from airisd.http.request import read_body
from airisd.model import Point
from airisd.plugin import PluginConfig

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SnappyError(ValueError):
    """The body is not a valid snappy block."""


async def read_raw_body(request: Request, limit: int) -> bytes:
    """The body as sent, bounded by ``limit`` bytes, whatever its Content-Encoding says (snappy is
    the payload format of remote_write and Loki, not a transport encoding we undo here)."""
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-encoding"]
    raw = Request({**request.scope, "headers": headers}, request.receive)
    return await read_body(raw, limit)


def _uvarint(data: bytes) -> int:
    shift = 0
    value = 0
    for i, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
        if i == 9:
            break
    raise SnappyError("snappy: bad length header")


def snappy_block(body: bytes, limit: int) -> bytes:
    """Decompress one snappy block (the block format, not framed), refusing more than ``limit``
    decompressed bytes before doing the work."""
    if not body:
        raise SnappyError("snappy: empty body")
    size = _uvarint(body)
    if size > limit:
        raise PayloadTooLarge(
            f"decompressed body would be {size} bytes; the limit is {limit} (http.max_body_bytes)",
            details={"limit_bytes": limit},
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise SnappyError(f"body is not a valid snappy block: {exc}") from None


def snappy_compress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


class MetricLimits:
    """The same limits as the seed's metrics API (name, label count and sizes)."""

    __slots__ = ("max_label_key_length", "max_label_value_length", "max_labels", "max_name_length")

    def __init__(
        self,
        *,
        max_name_length: int = 256,
        max_labels: int = 64,
        max_label_key_length: int = 128,
        max_label_value_length: int = 1024,
    ) -> None:
        self.max_name_length = max_name_length
        self.max_labels = max_labels
        self.max_label_key_length = max_label_key_length
        self.max_label_value_length = max_label_value_length

    def problem(self, p: Point) -> str | None:
        """Why a point cannot be stored, or None. Cheap: runs once per sample."""
        name = p.name
        if not name or len(name) > self.max_name_length:
            return f"metric name must be 1 to {self.max_name_length} characters"
        if _CONTROL.search(name):
            return f"metric name {name[:60]!r} has control characters"
        if not math.isfinite(p.value):
            return f"{name[:60]}: value {p.value} is not finite"
        labels = p.labels
        if len(labels) > self.max_labels:
            return f"{name[:60]}: {len(labels)} labels; at most {self.max_labels}"
        for k, v in labels.items():
            if not k or len(k) > self.max_label_key_length:
                return (
                    f"{name[:60]}: label name {k[:40]!r} must be 1 to {self.max_label_key_length} characters"
                )
            if len(v) > self.max_label_value_length:
                return (
                    f"{name[:60]}: label {k[:40]!r} is longer than {self.max_label_value_length} characters"
                )
        return None


def label_text(value: object) -> str:
    """An attribute value as a label: strings as they are, booleans as true/false, numbers written out."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class MetricLimitsConfig(PluginConfig):
    """The limit options every metric protocol input shares, with the seed's API's defaults."""

    ## Limits, as the seed's metrics API has them (name length, label count and sizes).
    max_name_length: int = 256
    max_labels: int = 64
    max_label_key_length: int = 128
    max_label_value_length: int = 1024

    def validate(self) -> None:
        for name in ("max_name_length", "max_labels", "max_label_key_length", "max_label_value_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def metric_limits(self) -> MetricLimits:
        return MetricLimits(max_name_length=self.max_name_length, max_labels=self.max_labels,
                            max_label_key_length=self.max_label_key_length,
                            max_label_value_length=self.max_label_value_length)
