"""The synchronous half of a disk buffer: segment files, the cursor, recovery. Called from worker
threads (never on the event loop) by DiskBuffer, and directly by ``airisd buffer inspect|repair``.

Layout of one buffer directory:

    lock                     flock'd (exclusive) by the daemon while the buffer is open
    cursor                   where delivery resumes: two 32-byte slots written alternately
    00000000000000000007.seg append-only segments of framed records (see airisd/buffer/codec.py),
    00000000000000000008.seg named by a number that only grows; a position is (segment, offset)
    corrupt/                 segments moved aside by recovery or repair

Recovery (``SegmentLog.open``) never refuses to start: a torn tail of the newest segment (a record
cut short by a crash: it was never acknowledged, since acknowledgement follows the fsync) is
truncated; a segment with a damaged record is copied to ``corrupt/`` as it was, reported, and
mended in place: each damaged record is overwritten by a padding frame of the same size, so that
the good records around it are still delivered at their offsets. When a damaged length field
leaves nothing to resume from, the rest of that segment is cut off. Delivery never stops. Every
open starts a fresh segment for new appends, so nothing is appended after bytes of unknown state.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from airisd.buffer import codec

SEGMENT_SUFFIX = ".seg"
CORRUPT_DIR = "corrupt"
LOCK_FILE = "lock"
CURSOR_FILE = "cursor"
_SLOT = struct.Struct("<QQQI")  # generation, segment, offset, crc32 of the first 24 bytes
SLOT_SIZE = 32


class BufferLocked(RuntimeError):
    """Another process (a running daemon) holds the buffer directory."""


def segment_name(number: int) -> str:
    return f"{number:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob(f"*{SEGMENT_SUFFIX}"):
        stem = p.name[: -len(SEGMENT_SUFFIX)]
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Entry:
    """One record waiting for delivery."""

    segment: int
    offset: int
    size: int  # the whole frame
    count: int
    appended_ns: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class Finding:
    """Something recovery or a scan found wrong, and what was done about it."""

    kind: str  # torn_tail | corrupt_segment
    segment: str
    offset: int
    detail: str
    action: str = ""  # truncated | moved to corrupt/... | "" (inspect only reports)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "segment": self.segment, "offset": self.offset, "detail": self.detail,
                "action": self.action}


@dataclass
class SegmentScan:
    entries: list[Entry] = field(default_factory=list)
    good_end: int = 0  # offset just past the last good record
    holes: list[tuple[int, int, str]] = field(default_factory=list)  # damaged byte ranges: start, end, why
    torn_at: int = -1  # the newest segment's tail from here on was never completely written
    torn_detail: str = ""
    size: int = 0


def scan_segment(path: Path, number: int, start: int, *, newest: bool) -> SegmentScan:
    """Verify every record from ``start``. A bad record is a torn tail when it can be one (the newest
    segment, and nothing but that record or zero bytes after it); otherwise it is damage: when its
    length field still leads to a good record the scan goes on from there (one hole), else the rest
    of the segment is one hole."""
    data = path.read_bytes()
    scan = SegmentScan(good_end=start, size=len(data))
    off = start
    while off < len(data):
        resume = -1
        if len(data) - off < codec.HEADER_SIZE:
            detail, tail = f"{len(data) - off} bytes left, less than a header", True
        else:
            length, crc = codec.read_header(memoryview(data)[off:])
            end = off + codec.HEADER_SIZE + length
            if length > codec.MAX_BODY or end > len(data):
                detail, tail = f"record of {length} bytes runs past the end ({len(data)})", True
            else:
                try:
                    meta = codec.check_body(memoryview(data)[off + codec.HEADER_SIZE:end], crc)
                except codec.CorruptRecord as exc:
                    detail = str(exc)
                    tail = end == len(data) or not any(data[off:])
                    resume = end if end - off >= codec.MIN_FRAME else -1
                else:
                    if meta.signal is not None:  # padding holds nothing
                        scan.entries.append(Entry(number, off, end - off, meta.count, meta.appended_ns))
                    off = scan.good_end = end
                    continue
        if newest and tail:
            scan.torn_at, scan.torn_detail = off, f"{detail} at offset {off}"
            break
        if resume < 0 or resume >= len(data):
            scan.holes.append((off, len(data), f"{detail} at offset {off}"))
            break
        scan.holes.append((off, resume, f"{detail} at offset {off}"))
        off = resume
    return scan


class Cursor:
    """Where delivery resumes, as (segment, offset). Two slots written alternately, each with its own
    CRC: a write torn by a crash leaves the other slot, an older and so safe position."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.generation = 0
        self.position = (0, 0)
        self.fd = -1
        if path.exists():
            self.generation, self.position = self._load(path.read_bytes())
        if not readonly:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    @staticmethod
    def _load(data: bytes) -> tuple[int, tuple[int, int]]:
        best = (0, (0, 0))
        for i in range(2):
            chunk = data[i * SLOT_SIZE: i * SLOT_SIZE + _SLOT.size]
            if len(chunk) < _SLOT.size:
                continue
            gen, seg, off, crc = _SLOT.unpack(chunk)
            if zlib.crc32(chunk[:24]) == crc and gen >= best[0]:
                best = (gen, (seg, off))
        return best

    def save(self, segment: int, offset: int) -> None:
        self.generation += 1
        head = struct.pack("<QQQ", self.generation, segment, offset)
        slot = (head + struct.pack("<I", zlib.crc32(head))).ljust(SLOT_SIZE, b"\0")
        os.pwrite(self.fd, slot, (self.generation % 2) * SLOT_SIZE)
        os.fdatasync(self.fd)
        self.position = (segment, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def acquire_lock(directory: Path) -> int:
    """Hold the directory exclusively; raise BufferLocked if a daemon (or a repair) has it."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BufferLocked(f"{directory} is in use by a running airisd (stop it first)") from None
    return fd


def is_locked(directory: Path) -> bool:
    path = directory / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def quarantine(directory: Path, number: int) -> Path:
    """Copy a damaged segment into corrupt/ (never overwriting an earlier copy), for a post-mortem,
    before recovery rewrites it; return the copy's path."""
    target_dir = directory / CORRUPT_DIR
    target_dir.mkdir(exist_ok=True)
    target = target_dir / segment_name(number)
    n = 1
    while target.exists():
        target = target_dir / f"{segment_name(number)}.{n}"
        n += 1
    shutil.copyfile(directory / segment_name(number), target)
    with open(target, "rb") as fh:
        os.fsync(fh.fileno())
    fsync_dir(target_dir)
    return target


def _mend(path: Path, scan: SegmentScan) -> None:
    """Pad each damaged record in place (the good ones keep their offsets, so the cursor stays
    valid); a hole that reaches the end, or a torn tail, is cut off instead."""
    cut = scan.torn_at if scan.torn_at >= 0 else scan.size
    with open(path, "r+b") as fh:
        for start, end, _ in scan.holes:
            if end >= cut:
                cut = min(cut, start)
                continue
            fh.seek(start)
            fh.write(codec.padding(end - start))
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())


def recover(directory: Path, start: tuple[int, int], *, fix: bool) -> tuple[list[Entry], list[Finding]]:
    """Scan every segment from the cursor; with ``fix``, truncate a torn tail, copy a damaged
    segment into corrupt/ and pad its bad records out, and delete segments wholly before the
    cursor. The entries are the good records, delivered whether or not ``fix`` is set."""
    entries: list[Entry] = []
    findings: list[Finding] = []
    numbers = list_segments(directory)
    for i, number in enumerate(numbers):
        path = directory / segment_name(number)
        if number < start[0]:
            if fix:
                path.unlink()
            continue
        offset = start[1] if number == start[0] else 0
        scan = scan_segment(path, number, offset, newest=i == len(numbers) - 1)
        entries += scan.entries
        if scan.holes:
            damaged = sum(end - start for start, end, _ in scan.holes)
            f = Finding("corrupt_segment", path.name, scan.holes[0][0],
                        f"{scan.holes[0][2]}; {len(scan.holes)} damaged range(s), {damaged} bytes; "
                        f"{len(scan.entries)} good records kept")
            if fix:
                copy = quarantine(directory, number)
                f.action = f"copied to {copy.relative_to(directory)}; damaged records skipped"
            findings.append(f)
        if scan.torn_at >= 0:
            f = Finding("torn_tail", path.name, scan.torn_at, scan.torn_detail)
            f.action = f"truncated to {scan.torn_at} bytes" if fix else ""
            findings.append(f)
        if fix and (scan.holes or scan.torn_at >= 0):
            _mend(path, scan)
    if fix:
        fsync_dir(directory)
    return entries, findings


class SegmentLog:
    """An open buffer directory: appends to the newest segment, reads records, commits the cursor."""

    def __init__(self, directory: Path, *, max_segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_segment_bytes = max_segment_bytes
        self._lock_fd = -1
        self._write_fd = -1
        self._read_fds: dict[int, int] = {}
        self.active = 0  # the segment new records go to
        self.active_size = 0
        self.cursor: Cursor | None = None

    def open(self) -> tuple[list[Entry], list[Finding]]:
        """Lock, recover, start a fresh segment; return the records waiting and what was found."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = acquire_lock(self.directory)
        try:
            self.cursor = Cursor(self.directory / CURSOR_FILE)
            entries, findings = recover(self.directory, self.cursor.position, fix=True)
            numbers = list_segments(self.directory)
            for n in numbers:  # empty segments (a crash right after a roll) hold nothing
                if (self.directory / segment_name(n)).stat().st_size == 0:
                    (self.directory / segment_name(n)).unlink()
            self._start_segment(max([*numbers, self.cursor.position[0], 0]) + 1)
        except BaseException:
            self.close()
            raise
        return entries, findings

    def _start_segment(self, number: int) -> None:
        fd = os.open(self.directory / segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if self._write_fd >= 0:  # closed only once the next one is open: never a dangling descriptor
            os.close(self._write_fd)
        self._write_fd = fd
        self.active = number
        self.active_size = 0
        fsync_dir(self.directory)

    def append(self, frames: list[bytes]) -> list[tuple[int, int]]:
        """Write frames and fdatasync them; return each one's (segment, offset). On failure, cut what
        this call wrote so that no half-written group stays behind, and raise."""
        positions: list[tuple[int, int]] = []
        touched: list[tuple[int, int]] = []  # (segment, size before)
        try:
            chunk: list[bytes] = []
            for frame in frames:
                if self.active_size and self.active_size + len(frame) > self.max_segment_bytes:
                    self._flush(chunk, touched)
                    chunk = []
                    os.fdatasync(self._write_fd)
                    self._start_segment(self.active + 1)
                positions.append((self.active, self.active_size))
                chunk.append(frame)
                self.active_size += len(frame)
            self._flush(chunk, touched)
            os.fdatasync(self._write_fd)
        except OSError:
            for segment, size in touched:  # by path: a rolled segment's descriptor is closed already
                with contextlib.suppress(OSError):
                    os.truncate(self.directory / segment_name(segment), size)
            if touched and touched[-1][0] == self.active:
                self.active_size = touched[-1][1]
            raise
        return positions

    def _flush(self, chunk: list[bytes], touched: list[tuple[int, int]]) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        start = self.active_size - len(data)
        touched.append((self.active, start))
        view = memoryview(data)
        while view:
            n = os.pwrite(self._write_fd, view, start)
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            view, start = view[n:], start + n

    def read(self, entry: Entry) -> tuple[bytes, codec.RecordMeta]:
        """The body of one record, verified (raises codec.CorruptRecord)."""
        fd = self._read_fds.get(entry.segment)
        if fd is None:
            fd = self._read_fds[entry.segment] = os.open(self.directory / segment_name(entry.segment), os.O_RDONLY)
        data = os.pread(fd, entry.size, entry.offset)
        if len(data) != entry.size:
            raise codec.CorruptRecord(f"short read: {len(data)} of {entry.size} bytes")
        length, crc = codec.read_header(data)
        if length + codec.HEADER_SIZE != entry.size:
            raise codec.CorruptRecord("length field changed on disk")
        body = data[codec.HEADER_SIZE:]
        return body, codec.check_body(body, crc)

    def commit(self, position: tuple[int, int], keep_from: int) -> list[int]:
        """Persist the cursor, then delete segments below ``keep_from`` (all delivered)."""
        assert self.cursor is not None
        self.cursor.save(*position)
        removed = []
        for n in list_segments(self.directory):
            if n >= keep_from or n >= self.active:
                break
            fd = self._read_fds.pop(n, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / segment_name(n)).unlink()
            removed.append(n)
        return removed

    def close(self) -> None:
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        if self.cursor is not None:
            self.cursor.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
