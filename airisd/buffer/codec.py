"""One batch as one framed record, the unit a disk buffer appends, checksums and delivers.

    frame  = header body
    header = <u32 body length> <u32 CRC32 of body>          (little-endian, 8 bytes)
    body   = <u8 signal> <u32 record count> <u64 appended at, ns> <msgpack of the items>

Signal code 0 is padding: a frame that recovery writes over a damaged record so that the records
around it keep their offsets (and the cursor stays valid). Scans skip it; it holds no events.

The count and the append time sit before the payload so that a scan (recovery, inspect) learns
how many events a record holds, and how old it is, without decoding it. Items are msgspec Structs
(Point, LogRecord, Span), encoded as msgpack maps and decoded back into the same types.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec

from airisd.model import Batch, LogRecord, Point, Signal, Span

HEADER = struct.Struct("<II")
META = struct.Struct("<BIQ")
HEADER_SIZE = HEADER.size
MIN_BODY = META.size
MAX_BODY = 1 << 30  # a length beyond this is corruption, not a record
MIN_FRAME = HEADER_SIZE + MIN_BODY
PAD_CODE = 0

SIGNAL_CODES = {Signal.METRICS: 1, Signal.LOGS: 2, Signal.TRACES: 3}
SIGNAL_OF_CODE = {v: k for k, v in SIGNAL_CODES.items()}
_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[Signal, msgspec.msgpack.Decoder[Any]] = {
    Signal.METRICS: msgspec.msgpack.Decoder(list[Point]),
    Signal.LOGS: msgspec.msgpack.Decoder(list[LogRecord]),
    Signal.TRACES: msgspec.msgpack.Decoder(list[Span]),
}


class CorruptRecord(ValueError):
    """A frame whose checksum, length or content does not hold."""


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What a scan learns about one record without decoding its items."""

    signal: Signal | None  # None: padding
    count: int
    appended_ns: int


def encode(batch: Batch, appended_ns: int) -> bytes:
    """The full frame (header and body) of one batch."""
    body = META.pack(SIGNAL_CODES[batch.signal], len(batch.items), appended_ns) + _ENCODER.encode(batch.items)
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def read_header(data: bytes | memoryview) -> tuple[int, int]:
    """(body length, crc) from the first HEADER_SIZE bytes."""
    length, crc = HEADER.unpack_from(data)
    return int(length), int(crc)


def check_body(body: bytes | memoryview, crc: int) -> RecordMeta:
    """Verify a body against its header's CRC; raise CorruptRecord if it does not hold."""
    if len(body) < MIN_BODY:
        raise CorruptRecord(f"record body of {len(body)} bytes is shorter than its {MIN_BODY}-byte preamble")
    if zlib.crc32(body) != crc:
        raise CorruptRecord("CRC32 mismatch")
    code, count, appended_ns = META.unpack_from(body)
    if code == PAD_CODE:
        return RecordMeta(None, 0, 0)
    signal = SIGNAL_OF_CODE.get(code)
    if signal is None:
        raise CorruptRecord(f"unknown signal code {code}")
    return RecordMeta(signal, int(count), int(appended_ns))


def padding(size: int) -> bytes:
    """A valid frame of exactly ``size`` bytes (>= MIN_FRAME) that holds nothing."""
    if size < MIN_FRAME:
        raise ValueError(f"padding needs at least {MIN_FRAME} bytes, got {size}")
    body = META.pack(PAD_CODE, 0, 0) + bytes(size - MIN_FRAME)
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def decode_body(body: bytes | memoryview, meta: RecordMeta) -> Batch:
    """The batch of a verified body."""
    if meta.signal is None:
        raise CorruptRecord("a padding frame holds no batch")
    try:
        items = _DECODERS[meta.signal].decode(memoryview(body)[MIN_BODY:])
    except msgspec.DecodeError as exc:  # a checksum collision or a writer bug: never crash on it
        raise CorruptRecord(f"undecodable {meta.signal.value} payload: {exc}") from None
    return Batch(meta.signal, items)
