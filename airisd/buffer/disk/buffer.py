"""DiskBuffer: an output's buffer as a checksummed segment log (see segments.py for the layout).

Appends are group-committed: requests that arrive while an fsync is running join the next group,
and each group is written and fdatasync'ed with one call in a worker thread, so the event loop
never blocks on the disk and concurrent requests share the cost. A request's waiter returns only
after its group is on disk: that is what "acknowledged" means.

Delivery is in append order. Batches appended by this process are kept in memory (up to
``CACHE_BYTES``) so the common case never reads the disk back; the rest (recovered at start-up,
or beyond the cache) is read and verified from the segments. After the output's write succeeds,
``commit`` persists the cursor (fdatasync) and deletes segments wholly delivered.

Duplicates after a crash are bounded: only records taken for the write in flight (at most one
output write, i.e. ``batch_size`` records or one larger batch) can be delivered twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from airisd.buffer import codec
from airisd.buffer.base import Offer, Taken
from airisd.buffer.disk.segments import Entry, Finding, SegmentLog
from airisd.errors import Backpressure
from airisd.model import Batch

log = logging.getLogger("airisd.buffer")

CACHE_BYTES = 8 << 20  # of frames; the decoded objects take several times that in memory


class _Group:
    """Frames that will share one write and one fdatasync."""

    __slots__ = ("batches", "done", "error", "frames", "nbytes", "offers")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.offers: list[Offer] = []
        self.nbytes = 0
        self.done = anyio.Event()
        self.error: BaseException | None = None


class _AppendWaiter:
    __slots__ = ("buffer", "group")

    def __init__(self, buffer: DiskBuffer, group: _Group) -> None:
        self.buffer = buffer
        self.group = group

    async def wait(self) -> None:
        await self.buffer._wait_group(self.group)


class DiskBuffer:
    type = "disk"

    def __init__(self, directory: Path, *, max_bytes: int, max_segment_bytes: int, name: str = "") -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.name = name or str(directory)
        self.log = SegmentLog(self.directory, max_segment_bytes=max_segment_bytes)
        self._unread: deque[Entry] = deque()
        self._inflight: list[Entry] = []
        self._unread_items = 0
        self._events = 0
        self._bytes = 0  # records on disk not yet committed, plus frames waiting for their group
        self._cache: dict[tuple[int, int], Batch] = {}
        self._cache_bytes = 0
        self._group: _Group | None = None
        self._flushing = False
        self._opened = False
        self._open_event: anyio.Event | None = None
        self.findings: list[Finding] = []
        self.corrupt_segments = 0
        self.corrupt_records = 0
        self.last_error = ""
        self.on_data: Callable[[], None] = _nothing
        self.on_corrupt: Callable[[int], None] = _nothing_int  # segments moved aside at start-up
        self.on_unreadable: Callable[[int], None] = _nothing_int  # events failing their check when read

    # -- life cycle --------------------------------------------------------------------------
    async def open(self) -> None:
        entries, findings = await anyio.to_thread.run_sync(self.log.open)
        self._opened = True
        if self._open_event is not None:
            self._open_event.set()
            self._open_event = None
        self.findings = findings
        for f in findings:
            level = logging.ERROR if f.kind == "corrupt_segment" else logging.WARNING
            log.log(level, "disk buffer recovery: " + f.kind.replace("_", " "),
                    extra={"kv": {"buffer": self.name, **f.as_dict()}})
            if f.kind == "corrupt_segment":
                self.corrupt_segments += 1
                self.on_corrupt(1)
        self._unread.extend(entries)
        self._unread_items = self._events = sum(e.count for e in entries)
        self._bytes = sum(e.size for e in entries)
        if entries:
            log.info("disk buffer recovered records to deliver",
                     extra={"kv": {"buffer": self.name, "events": self._events, "bytes": self._bytes}})
            self.on_data()

    async def close(self) -> None:
        while self._opened and (self._flushing or self._group is not None):  # let appends in progress finish
            if self._group is None:
                await anyio.sleep(0.005)
                continue
            with contextlib.suppress(Backpressure):  # its requests were told
                await self._wait_group(self._group)
        if self._opened:
            await anyio.to_thread.run_sync(self.log.close)
            self._opened = False

    # -- admission and appends (request path) ------------------------------------------------
    def has_room(self, offer: Offer) -> bool:
        return self._bytes == 0 or self._bytes + len(offer.frame) <= self.max_bytes

    def put(self, offer: Offer) -> _AppendWaiter:
        group = self._group
        if group is None:
            group = self._group = _Group()
        frame = offer.frame
        group.frames.append(frame)
        group.offers.append(offer)
        group.nbytes += len(frame)
        self._bytes += len(frame)
        return _AppendWaiter(self, group)

    async def _wait_group(self, group: _Group) -> None:
        """The first waiter to find no flush running writes groups until none is left (shielded:
        a cancelled request must not strand the others); the rest wait for their group. Appends
        made before open() (recovery) has finished wait for it."""
        while not self._opened:
            if self._open_event is None:
                self._open_event = anyio.Event()
            await self._open_event.wait()
        if not self._flushing:
            self._flushing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._group is not None:
                        pending, self._group = self._group, None
                        await self._flush(pending)
            finally:
                self._flushing = False
        await group.done.wait()
        if group.error is not None:
            raise Backpressure(f"disk buffer {self.name} could not store the batch ({group.error}); retry later",
                               details={"buffer": self.name}) from group.error

    async def _flush(self, group: _Group) -> None:
        try:
            positions = await anyio.to_thread.run_sync(self.log.append, group.frames)
        except OSError as exc:
            self._bytes -= group.nbytes
            group.error = exc
            self.last_error = f"append failed: {exc}"
            log.error("disk buffer append failed", extra={"kv": {"buffer": self.name, "error": str(exc)}})
        else:
            for (segment, offset), frame, offer in zip(positions, group.frames, group.offers, strict=True):
                entry = Entry(segment, offset, len(frame), len(offer.batch), offer.appended_ns)
                self._unread.append(entry)
                if self._cache_bytes + entry.size <= CACHE_BYTES:
                    self._cache[(segment, offset)] = offer.batch
                    self._cache_bytes += entry.size
            n = sum(len(o.batch) for o in group.offers)
            self._unread_items += n
            self._events += n
            self.on_data()
        group.done.set()

    # -- delivery (the runner) ---------------------------------------------------------------
    @property
    def unread_items(self) -> int:
        return self._unread_items

    @property
    def events(self) -> int:
        return self._events

    @property
    def bytes(self) -> int:
        return self._bytes

    def oldest_age_secs(self) -> float:
        first = self._inflight[0] if self._inflight else (self._unread[0] if self._unread else None)
        return max(0.0, (time.time_ns() - first.appended_ns) / 1e9) if first is not None else 0.0

    async def take(self, limit: int) -> Taken:
        entries: list[Entry] = []
        n = 0
        while self._unread and (n == 0 or n + self._unread[0].count <= limit):
            entry = self._unread.popleft()
            entries.append(entry)
            n += entry.count
        self._unread_items -= n
        self._inflight.extend(entries)
        batches: list[Batch | None] = []
        missing: list[int] = []
        for i, e in enumerate(entries):
            batch = self._cache.pop((e.segment, e.offset), None)
            if batch is not None:
                self._cache_bytes -= e.size
            else:
                missing.append(i)
            batches.append(batch)
        if missing:
            read = await anyio.to_thread.run_sync(self._read_many, [entries[i] for i in missing])
            for i, batch in zip(missing, read, strict=True):
                batches[i] = batch
        return Taken([b for b in batches if b is not None], token=len(entries))

    def _read_many(self, entries: list[Entry]) -> list[Batch | None]:
        out: list[Batch | None] = []
        for e in entries:
            try:
                body, meta = self.log.read(e)
                out.append(codec.decode_body(body, meta))
            except (codec.CorruptRecord, OSError) as exc:
                # Verified at start-up or written by us: the disk changed under us. Skip, count, go on.
                self.corrupt_records += e.count
                self.on_unreadable(e.count)
                self.last_error = f"unreadable record in segment {e.segment} at {e.offset}: {exc}"
                log.error("disk buffer record unreadable; skipped",
                          extra={"kv": {"buffer": self.name, "segment": e.segment, "offset": e.offset,
                                        "events": e.count, "error": str(exc)}})
                out.append(None)
        return out

    async def commit(self, taken: Taken, error: BaseException | None = None) -> None:
        """The output has the taken records (or refused them for good): move the cursor past them."""
        entries, self._inflight = self._inflight, []
        if not entries:
            return
        last = entries[-1]
        keep_from = self._unread[0].segment if self._unread else self.log.active
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.log.commit, (last.segment, last.end), keep_from)
        self._events -= sum(e.count for e in entries)
        self._bytes -= sum(e.size for e in entries)

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "directory": str(self.directory), "max_size_bytes": self.max_bytes,
                "corrupt_segments": self.corrupt_segments, "unreadable_events": self.corrupt_records,
                "findings": [f.as_dict() for f in self.findings]}


def _nothing() -> None:
    pass


def _nothing_int(n: int) -> None:
    pass
