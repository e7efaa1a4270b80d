"""Property test of the disk buffer against a model: random appends, takes, commits, crashes (the
process dies: no close, maybe a half-written record at the tail) and orderly reopens.

The model is the queue of acknowledged batches not yet committed. Every take must return exactly
its front (order kept, nothing acknowledged lost); a crash puts nothing back but the batches taken
and not committed, which is the documented bound on duplicates."""

from __future__ import annotations

import os
import tempfile
from collections import deque
from pathlib import Path

import anyio
from hypothesis import given
from hypothesis import strategies as st

from airisd.buffer.base import Offer
from airisd.buffer.disk import DiskBuffer
from airisd.model import Batch, Point, Signal
from tests.conftest import FAST_TMP

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4), st.integers(1, 3)),  # batches, records per batch
        st.tuples(st.just("take"), st.integers(1, 8), st.just(0)),  # limit
        st.tuples(st.just("commit"), st.just(0), st.just(0)),
        st.tuples(st.just("crash"), st.booleans(), st.just(0)),  # torn tail or not
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


def make(path: Path) -> DiskBuffer:
    return DiskBuffer(path, max_bytes=1 << 20, max_segment_bytes=4096)


async def scenario(path: Path, steps: list[tuple[str, int, int]]) -> None:
    buf = make(path)
    await buf.open()
    model: deque[list[int]] = deque()  # acknowledged, not committed; the first `inflight` are taken
    inflight = 0
    taken = None
    counter = 0
    most_redelivered = 0
    for op, a, b in steps:
        if op == "append":
            batches = []
            for _ in range(a):
                batches.append(list(range(counter, counter + b)))
                counter += b
            waiters = [buf.put(Offer(Batch(Signal.METRICS, [Point(name="p", value=v, ts=v) for v in vs])))
                       for vs in batches]
            for w in waiters:
                await w.wait()
            model.extend(batches)
        elif op == "take" and taken is None:
            taken = await buf.take(a)
            got = [[int(p.value) for p in bt.items] for bt in taken.batches]
            expected: list[list[int]] = []
            n = 0
            for vs in list(model)[inflight:]:
                if n and n + len(vs) > a:
                    break
                expected.append(vs)
                n += len(vs)
            assert got == expected, (got, expected)
            inflight = len(expected)
        elif op == "commit" and taken is not None:
            await buf.commit(taken)
            for _ in range(inflight):
                model.popleft()
            inflight, taken = 0, None
        elif op in ("crash", "reopen"):
            most_redelivered = max(most_redelivered, sum(len(vs) for vs in list(model)[:inflight]))
            if op == "crash":
                active = buf.log.directory / f"{buf.log.active:020d}.seg"
                buf.log.close()  # the process died: no orderly close
                if a:  # ...in the middle of writing a record nobody was told about
                    with active.open("ab") as fh:
                        fh.write(os.urandom(7))
            else:
                await buf.close()
            buf = make(path)
            await buf.open()
            inflight, taken = 0, None
            assert buf.events == sum(len(vs) for vs in model)
    # whatever is left comes out in order, then nothing more
    if taken is not None:
        await buf.commit(taken)
        for _ in range(inflight):
            model.popleft()
    rest: list[list[int]] = []
    while buf.unread_items:
        t = await buf.take(100)
        rest += [[int(p.value) for p in bt.items] for bt in t.batches]
        await buf.commit(t)
    assert rest == list(model)
    assert most_redelivered <= 8 + 3  # at most one take: its limit, or one batch beyond it
    await buf.close()


@given(ops)
def test_disk_buffer_keeps_order_loses_nothing_and_bounds_duplicates(steps: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="airisd-buf-", dir=FAST_TMP) as d:
        anyio.run(scenario, Path(d), steps)
