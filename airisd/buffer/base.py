"""What the output runner asks of a buffer, whatever its type.

    has_room(offer)   admission, on the request path: would this batch fit?
    put(offer)        accept it; the returned waiter's ``wait()`` returns once the batch is safe
                      (memory: at once, or when written for a durable store; disk: when fsynced)
    take(limit)       the next records in order, up to ``limit`` (the runner's batch_size)
    commit(taken)     the output has them (or has refused them for good): forget them

A record taken but not committed is delivered again after a crash (disk) — at least once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import anyio

from airisd.buffer import codec
from airisd.model import Batch


class Offer:
    """A batch on its way into buffers; encoded at most once however many buffers want the frame."""

    __slots__ = ("__dict__", "appended_ns", "batch")

    def __init__(self, batch: Batch, appended_ns: int | None = None) -> None:
        self.batch = batch
        self.appended_ns = time.time_ns() if appended_ns is None else appended_ns

    @cached_property
    def frame(self) -> bytes:
        return codec.encode(self.batch, self.appended_ns)


class Waiter(Protocol):
    async def wait(self) -> None: ...


class Ack:
    """Resolved once an output has accepted (or finally failed) a batch."""

    __slots__ = ("_event", "error")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        if not self._event.is_set():
            self.error = error
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        if self.error is not None:
            raise self.error


@dataclass
class Taken:
    """Records handed to the output: ``batches`` in order, and what commit() needs."""

    batches: list[Batch]
    acks: list[Ack] = field(default_factory=list)
    token: Any = None

    @property
    def items(self) -> int:
        return sum(len(b) for b in self.batches)


class Buffer(Protocol):
    type: str
    on_data: Callable[[], None]

    def has_room(self, offer: Offer) -> bool: ...
    def put(self, offer: Offer) -> Waiter | None: ...
    @property
    def unread_items(self) -> int: ...
    @property
    def events(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    def oldest_age_secs(self) -> float: ...
    async def open(self) -> None: ...
    async def take(self, limit: int) -> Taken: ...
    async def commit(self, taken: Taken, error: BaseException | None = None) -> None: ...
    async def close(self) -> None: ...
    def health(self) -> dict[str, Any]: ...
