"""One request at a time turns its body into records ("a turn"), and gives the turn up as soon as
its records are queued for the store.

Why: the event loop runs ready tasks first in, first out. When several big ingestion bodies arrive
together, their handlers are all ready at once and each parses for tens of milliseconds; the
output's runner, woken by the first handler's records, is queued behind the others, so the store
sat idle until every body was parsed and then wrote them all while the parsing side sat idle
(measured: writer idle 40-80 ms after each group commit, the daemon using one core of two). With
turns, a handler waits for its turn (not in the ready queue) and the runner, woken by the previous
turn's records, runs before the next parse: parsing and the store's write overlap.

Only the ingestion handlers take a turn, after their body is read (a slow client never holds it),
and the pipeline gives it up once the batch is queued; the HTTP wrapper gives it up in any case
when the handler ends, so an error never keeps it.
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar

import anyio

# One lock per event loop (a lock's waiters belong to one loop; tests run many loops).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Lock] = weakref.WeakKeyDictionary()
_held: ContextVar[anyio.Lock | None] = ContextVar("airisd_turn_held", default=None)


async def take_turn() -> None:
    """Wait for the turn (first come, first served: anyio's Lock queues its waiters); a no-op for
    a task that holds it already."""
    if _held.get() is not None:
        return
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = anyio.Lock()
    await lock.acquire()
    _held.set(lock)


def give_up_turn() -> None:
    """Give the turn up, if this task holds it."""
    lock = _held.get()
    if lock is not None:
        _held.set(None)
        lock.release()


def turn_taken() -> bool:
    """Whether some request holds the turn now (for tests and health)."""
    try:
        lock = _locks.get(asyncio.get_running_loop())
    except RuntimeError:
        return False
    return lock is not None and lock.locked()
