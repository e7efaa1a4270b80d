"""The disk buffer on its own: appends survive a reopen, delivery is in order, the cursor moves
and delivered segments go away; recovery truncates torn tails and moves corrupt segments aside."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from airisd.buffer import codec
from airisd.buffer.base import Offer
from airisd.buffer.disk import BufferLocked, DiskBuffer
from airisd.buffer.disk.segments import CORRUPT_DIR, Entry, list_segments, scan_segment, segment_name
from airisd.errors import Backpressure
from airisd.model import Batch, LogRecord, Point, Signal, Span, SpanLog

pytestmark = pytest.mark.anyio


def pts(start: int, n: int = 1) -> Batch:
    return Batch(Signal.METRICS, [Point(name="m", value=float(i), ts=i, labels={"i": str(i)})
                                  for i in range(start, start + n)])


def make(path: Path, **kw: int) -> DiskBuffer:
    return DiskBuffer(path, max_bytes=kw.get("max_bytes", 1 << 20), max_segment_bytes=kw.get("segment", 4096))


async def append(buf: DiskBuffer, *batches: Batch) -> None:
    waiters = [buf.put(Offer(b)) for b in batches]
    for w in waiters:
        await w.wait()


async def drain(buf: DiskBuffer, limit: int = 1000) -> list[float]:
    out: list[float] = []
    while buf.unread_items:
        taken = await buf.take(limit)
        out += [p.value for b in taken.batches for p in b.items]
        await buf.commit(taken)
    return out


def test_codec_round_trips_every_signal() -> None:
    span = Span(trace_id="t", span_id="s", operation_name="op", service_name="svc", start_ts=1, end_ts=5,
                tags={"a": 1, "b": True, "c": "x", "d": 1.5}, logs=[SpanLog(ts=2, message="m", fields={"k": [1]})])
    log = LogRecord(ts=3, level="INFO", message="hé", attributes={"nested": {"x": [1, "y", None]}})
    for batch in (pts(0, 3), Batch(Signal.LOGS, [log]), Batch(Signal.TRACES, [span])):
        frame = codec.encode(batch, 42)
        length, crc = codec.read_header(frame)
        body = frame[codec.HEADER_SIZE:]
        meta = codec.check_body(body, crc)
        assert (length, meta.signal, meta.count, meta.appended_ns) == (len(body), batch.signal, len(batch), 42)
        assert codec.decode_body(body, meta).items == batch.items
        flipped = bytearray(body)
        flipped[-1] ^= 0xFF
        with pytest.raises(codec.CorruptRecord, match="CRC32"):
            codec.check_body(bytes(flipped), crc)


async def test_appended_batches_survive_reopen_and_are_delivered_in_order(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    await append(buf, *(pts(i * 10, 10) for i in range(30)))  # ~30 records over several 4 KiB segments
    assert buf.events == 300
    assert buf.oldest_age_secs() >= 0
    first = await buf.take(25)  # whole batches up to the limit: 20 records
    assert [p.value for b in first.batches for p in b.items] == [float(i) for i in range(20)]
    await buf.commit(first)
    await buf.close()
    assert len(list_segments(tmp_path)) > 2

    again = make(tmp_path)
    await again.open()
    assert again.events == 280
    assert await drain(again) == [float(i) for i in range(20, 300)]
    assert again.events == again.bytes == 0
    assert list_segments(tmp_path) == [again.log.active]  # every delivered segment deleted
    await again.close()


async def test_taken_but_uncommitted_records_are_delivered_again(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    await append(buf, pts(0, 5), pts(5, 5))
    await buf.take(5)  # the output was writing this when the process died: no commit
    buf.log.close()  # a crash: no orderly close

    again = make(tmp_path)
    await again.open()
    assert await drain(again) == [float(i) for i in range(10)]
    await again.close()


async def test_a_second_opener_is_refused_while_the_first_holds_the_directory(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    with pytest.raises(BufferLocked, match="in use"):
        await make(tmp_path).open()
    await buf.close()
    other = make(tmp_path)
    await other.open()
    await other.close()


async def test_a_full_buffer_refuses_but_an_empty_one_takes_an_oversized_batch(tmp_path: Path) -> None:
    buf = make(tmp_path, max_bytes=600)
    await buf.open()
    big = Offer(pts(0, 40))
    assert len(big.frame) > 600 and buf.has_room(big)
    await append(buf, big.batch)
    assert not buf.has_room(Offer(pts(100)))
    await drain(buf)
    assert buf.has_room(Offer(pts(100)))
    await buf.close()


async def test_an_append_failure_is_backpressure_and_leaves_nothing_behind(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    await append(buf, pts(0))
    os.close(buf.log._write_fd)  # the disk goes away under the buffer
    bad = os.open(os.devnull, os.O_RDONLY)
    buf.log._write_fd = bad
    with pytest.raises(Backpressure, match="could not store"):
        await append(buf, pts(1))
    assert buf.events == 1 and buf.bytes == len(Offer(pts(0), 0).frame)
    assert await drain(buf) == [0.0]
    await buf.close()


async def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    buf = make(tmp_path, segment=1 << 20)
    await buf.open()
    calls = 0
    real = buf.log.append

    def counting(frames: list[bytes]) -> list[tuple[int, int]]:
        nonlocal calls
        calls += 1
        return real(frames)

    buf.log.append = counting  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(append, buf, pts(i))
    assert buf.events == 50
    assert calls < 50  # requests that arrive during an fsync join the next group
    assert sorted(await drain(buf)) == [float(i) for i in range(50)]
    await buf.close()


# -- recovery ---------------------------------------------------------------------------------------


async def filled(tmp_path: Path, n: int = 200) -> list[Path]:
    """A closed buffer holding records 0..n-1 over several segments, nothing delivered."""
    buf = make(tmp_path)
    await buf.open()
    await append(buf, *(pts(i, 1) for i in range(n)))
    await buf.close()
    return [tmp_path / segment_name(s) for s in list_segments(tmp_path) if (tmp_path / segment_name(s)).stat().st_size]


async def reopen_and_drain(tmp_path: Path) -> tuple[DiskBuffer, list[float]]:
    buf = make(tmp_path)
    await buf.open()
    values = await drain(buf)
    await buf.close()
    return buf, values


async def test_a_flipped_byte_costs_only_its_record_and_the_segment_is_kept_aside(tmp_path: Path) -> None:
    segments = await filled(tmp_path)
    assert len(segments) >= 3
    victim = segments[1]
    original = victim.read_bytes()
    entries = _entries(victim)
    hit = entries[len(entries) // 2]
    lost = {p.value for p in _decode(original, hit).items}
    data = bytearray(original)
    data[hit.offset + codec.HEADER_SIZE + 5] ^= 0x55  # inside the record's body
    victim.write_bytes(bytes(data))

    buf = make(tmp_path)
    await buf.open()
    assert (tmp_path / CORRUPT_DIR / victim.name).read_bytes() == bytes(data)  # kept as found
    assert victim.stat().st_size == len(original)  # mended in place: offsets unchanged
    values = await drain(buf)
    await buf.close()
    assert values == [float(i) for i in range(200) if float(i) not in lost]
    assert len(lost) == 1 and buf.corrupt_segments == 1
    (finding,) = buf.findings
    assert finding.kind == "corrupt_segment" and finding.segment == victim.name and "CRC32" in finding.detail
    assert finding.offset == hit.offset and "copied to corrupt/" in finding.action
    assert not victim.exists()  # delivered, then deleted like any other


async def test_a_damaged_length_field_cuts_the_rest_of_that_segment_only(tmp_path: Path) -> None:
    segments = await filled(tmp_path)
    victim = segments[1]
    entries = _entries(victim)
    hit = entries[3]
    lost = {p.value for e in entries[3:] for p in _decode(victim.read_bytes(), e).items}
    data = bytearray(victim.read_bytes())
    data[hit.offset + 3] = 0x7F  # the length now points far past the end
    victim.write_bytes(bytes(data))
    buf, values = await reopen_and_drain(tmp_path)
    assert values == [float(i) for i in range(200) if float(i) not in lost]
    assert buf.corrupt_segments == 1 and "runs past the end" in buf.findings[0].detail


async def test_a_cursor_inside_a_mended_segment_stays_valid(tmp_path: Path) -> None:
    await filled(tmp_path)
    buf = make(tmp_path)
    await buf.open()
    for _ in range(30):
        await buf.commit(await buf.take(1))  # delivered 0..29: the cursor is inside segment 1 or 2
    await buf.close()
    seg = buf._unread[0].segment if buf._unread else 0
    victim = tmp_path / segment_name(seg)
    entries = [e for e in _entries(victim) if e.offset >= buf.log.cursor.position[1]]  # type: ignore[union-attr]
    data = bytearray(victim.read_bytes())
    data[entries[2].offset + codec.HEADER_SIZE + 1] ^= 0x01
    victim.write_bytes(bytes(data))
    _, values = await reopen_and_drain(tmp_path)
    assert values[:2] == [30.0, 31.0] and 32.0 not in values and values[2:] == [float(i) for i in range(33, 200)]


async def test_a_torn_tail_is_truncated_and_everything_before_it_delivered(tmp_path: Path) -> None:
    segments = await filled(tmp_path)
    last = segments[-1]
    last_values = [p.value for b in _records(last) for p in b.items]
    with last.open("r+b") as fh:  # a crash cut the last record short
        fh.truncate(last.stat().st_size - 5)
    buf, values = await reopen_and_drain(tmp_path)
    assert values == [float(i) for i in range(200) if float(i) != last_values[-1]]
    (finding,) = buf.findings
    assert finding.kind == "torn_tail" and finding.action.startswith("truncated")
    assert buf.corrupt_segments == 0


async def test_a_zero_filled_tail_is_torn_not_corrupt(tmp_path: Path) -> None:
    segments = await filled(tmp_path, n=5)
    with segments[-1].open("ab") as fh:
        fh.write(b"\0" * 100)  # the file grew but the data never made it (a crash before fdatasync)
    buf, values = await reopen_and_drain(tmp_path)
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [f.kind for f in buf.findings] == ["torn_tail"]


async def test_a_garbage_segment_file_is_moved_aside(tmp_path: Path) -> None:
    segments = await filled(tmp_path)
    garbage = tmp_path / segment_name(list_segments(tmp_path)[0] - 1 if list_segments(tmp_path)[0] > 1 else 0)
    garbage.write_bytes(os.urandom(3000))  # not the newest segment: never a torn tail
    buf, values = await reopen_and_drain(tmp_path)
    assert values == [float(i) for i in range(200)]
    assert buf.corrupt_segments == 1 and buf.findings[0].segment == garbage.name
    assert segments[0].exists() is False  # delivered and deleted


async def test_a_torn_cursor_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    await append(buf, *(pts(i) for i in range(6)))
    for _ in range(3):
        await buf.commit(await buf.take(1))  # cursor generations 1, 2, 3
    await buf.close()
    cursor = tmp_path / "cursor"
    data = bytearray(cursor.read_bytes())
    data[32 + 4] ^= 0xFF  # generation 3 lives in slot 1: tear it
    cursor.write_bytes(bytes(data))
    _, values = await reopen_and_drain(tmp_path)
    assert values == [2.0, 3.0, 4.0, 5.0]  # one record again (from generation 2), none lost


def _entries(path: Path) -> list[Entry]:
    return scan_segment(path, 0, 0, newest=False).entries


def _decode(data: bytes, e: Entry) -> Batch:
    body = data[e.offset + codec.HEADER_SIZE: e.end]
    return codec.decode_body(body, codec.check_body(body, codec.read_header(data[e.offset:])[1]))


def _records(path: Path) -> list[Batch]:
    data = path.read_bytes()
    return [_decode(data, e) for e in _entries(path)]


async def test_a_record_damaged_after_start_up_is_skipped_and_counted(tmp_path: Path) -> None:
    await filled(tmp_path, n=10)
    buf = make(tmp_path)
    lost: list[int] = []
    buf.on_unreadable = lost.append
    await buf.open()  # recovered records are read back from disk, not from the cache
    first = buf._unread[3]
    path = tmp_path / segment_name(first.segment)
    data = bytearray(path.read_bytes())
    data[first.end - 1] ^= 0x01  # the disk rots after the start-up check
    path.write_bytes(bytes(data))
    assert await drain(buf) == [0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert lost == [1] and buf.corrupt_records == 1 and "unreadable record" in buf.last_error
    await buf.close()


async def test_a_failed_roll_to_a_new_segment_leaves_no_half_group(tmp_path: Path) -> None:
    buf = make(tmp_path)
    await buf.open()
    await append(buf, pts(0, 10))
    blocker = tmp_path / segment_name(buf.log.active + 1)
    blocker.mkdir()  # the next segment cannot be created
    with pytest.raises(Backpressure):
        await append(buf, *(pts(100 + i * 10, 10) for i in range(20)))  # too much for one 4 KiB segment
    blocker.rmdir()
    await append(buf, pts(1000, 2))
    assert await drain(buf) == [float(i) for i in range(10)] + [1000.0, 1001.0]
    await buf.close()
    _, values = await reopen_and_drain(tmp_path)
    assert values == []  # nothing of the refused group surfaces later either
