"""MemoryBuffer: the in-process queue outputs always had. Lost on a crash; fast; bounded by the
output's ``max_queue_items`` and, when set, ``buffer.max_size_bytes`` (a batch's encoded size)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from airisd.buffer.base import Ack, Offer, Taken
from airisd.model import Batch


class MemoryBuffer:
    type = "memory"

    def __init__(self, *, max_items: int, max_bytes: int = 0, durable: bool = False) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes  # 0: not bounded by bytes (and batches are never encoded)
        self.durable = durable  # a store: the request waits for the write itself
        self._queue: deque[tuple[Batch, Ack | None, int, int]] = deque()  # batch, ack, bytes, appended ns
        self._items = 0
        self._bytes = 0
        self._inflight_items = 0
        self._inflight_oldest_ns = 0
        self.on_data: Callable[[], None] = _nothing

    def has_room(self, offer: Offer) -> bool:
        if not self._items:
            return True  # an oversized batch is accepted into an empty queue, or it never would be
        if self._items + len(offer.batch) > self.max_items:
            return False
        return not self.max_bytes or self._bytes + len(offer.frame) <= self.max_bytes

    def put(self, offer: Offer) -> Ack | None:
        ack = Ack() if self.durable else None
        size = len(offer.frame) if self.max_bytes else 0
        self._queue.append((offer.batch, ack, size, offer.appended_ns))
        self._items += len(offer.batch)
        self._bytes += size
        self.on_data()
        return ack

    @property
    def unread_items(self) -> int:
        return self._items

    @property
    def events(self) -> int:
        return self._items + self._inflight_items

    @property
    def bytes(self) -> int:
        return self._bytes

    def oldest_age_secs(self) -> float:
        oldest = self._inflight_oldest_ns or (self._queue[0][3] if self._queue else 0)
        return max(0.0, (time.time_ns() - oldest) / 1e9) if oldest else 0.0

    async def open(self) -> None:
        pass

    async def take(self, limit: int) -> Taken:
        taken = Taken([])
        n = 0
        while self._queue and (n == 0 or n + len(self._queue[0][0]) <= limit):
            batch, ack, size, appended_ns = self._queue.popleft()
            if not taken.batches and not self._inflight_items:  # the oldest of the writes in flight
                self._inflight_oldest_ns = appended_ns
            taken.batches.append(batch)
            if ack is not None:
                taken.acks.append(ack)
            n += len(batch)
            self._bytes -= size
        self._items -= n
        self._inflight_items += n  # a runner may have several writes out (Output.writes_in_flight)
        return taken

    async def commit(self, taken: Taken, error: BaseException | None = None) -> None:
        self._inflight_items = max(0, self._inflight_items - sum(len(b) for b in taken.batches))
        if not self._inflight_items:
            self._inflight_oldest_ns = 0
        for ack in taken.acks:
            ack.set(error)

    async def close(self) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {"type": self.type}


def _nothing() -> None:
    pass
