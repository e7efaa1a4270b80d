"""The embedded store's writer process (``outputs.sqlite writer = "process"``): what the daemon
writes through it is queryable from the daemon at once, its errors keep their meaning, it is
started again after it dies, and it does not outlive the daemon."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from airisd_plugins.outputs.sqlite import SqliteConfig, SqliteOutput
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from airisd_plugins.outputs.sqlite.writer_process import WriterGone, WriterProcess

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span
from airisd.testing import make_context

T0 = 1_705_314_600_000_000_000


def _log(i: int, **kw: object) -> LogRecord:
    fields: dict[str, object] = dict(ts=T0 + i, level="ERROR", message=f"database failed {i}", service="user-api",
                                     trace_id="", span_id="", labels={}, stack_trace="", user_id="", request_id="",
                                     attributes={})  # fmt: skip
    fields.update(kw)
    return LogRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def log_writer(tmp_path: Path):
    store = LogStore(tmp_path)
    store.create()
    writer = WriterProcess(store, background_checkpoint=False)
    yield store, writer
    writer.close()
    store.close()


def test_written_in_the_child_is_read_in_the_parent(log_writer) -> None:
    store, writer = log_writer
    assert not writer.running  # started by the first write, not before
    writer.write_batches([[_log(i) for i in range(300)], [_log(1000)]])
    assert writer.running and writer.pid != os.getpid()
    assert len(store.search(None, from_ns=0, to_ns=2**63 - 1, limit=1000)) == 301


def test_values_msgpack_cannot_carry_go_pickled(log_writer) -> None:
    store, writer = log_writer
    big = 2**70  # beyond 64 bits: msgpack refuses it, the pickled path keeps it (as text in the store)
    writer.write_batches([[_log(1, attributes={"n": big, "nested": {"t": (1, 2)}})]])
    [rec] = store.search(None, from_ns=0, to_ns=2**63 - 1, limit=10)
    assert rec.attributes["n"] in (big, str(big))
    assert rec.attributes["nested"] == {"t": [1, 2]}


def test_a_permanent_error_stays_permanent(log_writer) -> None:
    _, writer = log_writer
    with pytest.raises(PermanentError, match="out of range"):
        writer.write_batches([[_log(0, ts=2**63 + 5)]])
    writer.write_batches([[_log(7)]])  # the writer is still there and well
    assert writer.starts == 1


def test_a_killed_writer_is_started_again(log_writer) -> None:
    store, writer = log_writer
    writer.write_batches([[_log(1)]])
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while writer.running and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.write_batches([[_log(3)]])
    assert writer.starts == 2 and writer.pid != pid
    got = sorted(r.message for r in store.search(None, from_ns=0, to_ns=2**63 - 1, limit=10))
    assert got == ["database failed 1", "database failed 3"]


def test_a_writer_that_cannot_start_is_a_transient_error_naming_why(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.create()
    (tmp_path / "logs.db").unlink()
    (tmp_path / "logs.db").mkdir()  # the store cannot open a directory
    writer = WriterProcess(store, background_checkpoint=False)
    with pytest.raises(WriterGone, match="did not start: OperationalError") as info:
        writer.write_batches([[_log(1)]])
    assert isinstance(info.value, TransientError)  # the pipeline retries, with backoff
    assert not writer.running
    writer.close()


def test_sigterm_to_the_group_does_not_stop_the_writer_before_the_daemon(log_writer) -> None:
    _, writer = log_writer
    writer.write_batches([[_log(1)]])
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGTERM)
    os.kill(writer.pid, signal.SIGINT)
    time.sleep(0.2)
    assert writer.running
    writer.write_batches([[_log(2)]])  # the daemon's last flush still lands
    writer.close()
    writer.close()  # safe twice
    assert not writer.running


def test_the_writer_exits_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """A daemon killed with -9 closes the writer's stdin: the writer closes the store and exits."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from airisd_plugins.outputs.sqlite.logs_store import LogStore
        from airisd_plugins.outputs.sqlite.writer_process import WriterProcess
        from airisd.model import LogRecord
        store = LogStore(Path({str(tmp_path)!r})); store.create()
        w = WriterProcess(store, background_checkpoint=False)
        w.write_batches([[LogRecord(ts=1, level="INFO", message="m", service="s", trace_id="", span_id="",
                                    labels={{}}, stack_trace="", user_id="", request_id="", attributes={{}})]])
        print(w.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            try:  # our grandchild is re-parented; it may linger as a zombie of init only
                if Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z":
                    break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the writer process outlived its daemon")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_output_in_both_modes(tmp_path: Path, mode: str) -> None:
    """Through SqliteOutput: all three signals stored and queryable, retention before and after the
    writer started, health naming the writer, a clean shutdown."""

    async def main() -> None:
        ctx = make_context(tmp_path)
        out = SqliteOutput(SqliteConfig(writer=mode, retention_days=1), ctx)
        await out.start()
        assert (await out.enforce_retention()) == {"metrics": 0, "logs": 0, "traces": 0}
        now = ctx.clock.time_ns()
        old = now - 3 * 86_400 * 10**9
        await out.write(Batch(Signal.LOGS, [_log(0, ts=old), _log(1, ts=now)]))
        await out.write(Batch(Signal.METRICS, [Point(name="cpu", value=1.5, ts=now, labels={"h": "a"})]))
        span = Span(trace_id="a" * 32, span_id="b" * 16, parent_span_id="", operation_name="GET /",
                    service_name="web", start_ts=now, end_ts=now + 1000, tags={}, logs=[], kind="server")
        await out.write(Batch(Signal.TRACES, [span]))
        health = await out.check()
        if mode == "process":
            assert health["logs"]["writer"]["process"] not in (None, os.getpid())
        deleted = await out.enforce_retention()
        assert deleted["logs"] == 1
        logs = out.query_api(Signal.LOGS)
        assert [r.ts for r in logs.search(None, from_ns=0, to_ns=2**63 - 1, limit=10)] == [now]
        assert out.query_api(Signal.TRACES).get_trace("a" * 32)[0].operation_name == "GET /"
        series = out.query_api(Signal.METRICS).query_points("cpu", {}, 0, 2**63 - 1, 10)[0]
        assert [v for _, rows in series for _, v in rows] == [1.5]
        await out.shutdown()
        await out.shutdown()
        assert all(not w.running for w in out.writers.values())
        assert bool(out.writers) == (mode == "process")

    anyio.run(main)


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_batches_prepared_ahead_are_written_in_one_request(tmp_path: Path, mode: str) -> None:
    """prepare_ahead() encodes a batch for the writer process when it is queued; write_prepared()
    sends the parts of a group as one transaction. Without a writer process there is nothing to
    prepare and the plain write() is used."""

    async def main() -> None:
        ctx = make_context(tmp_path)
        out = SqliteOutput(SqliteConfig(writer=mode), ctx)
        await out.start()
        now = ctx.clock.time_ns()
        first = Batch(Signal.LOGS, [_log(0, ts=now), _log(1, ts=now + 1)])
        second = Batch(Signal.LOGS, [_log(2, ts=now + 2)])
        parts = [out.prepare_ahead(first), out.prepare_ahead(second)]
        assert all(isinstance(p, bytes) for p in parts) == (mode == "process")
        assert out.prepare_ahead(Batch(Signal.LOGS, [])) is None
        merged = Batch(Signal.LOGS, first.items + second.items)
        if mode == "process":
            await out.write_prepared(merged, parts)
        else:
            await out.write(merged)
        logs = out.query_api(Signal.LOGS)
        found = logs.search(None, from_ns=0, to_ns=2**63 - 1, limit=10)
        assert sorted(r.ts for r in found) == [now, now + 1, now + 2]
        await out.shutdown()

    anyio.run(main)


def test_writer_option_is_checked() -> None:
    with pytest.raises(ValueError, match="writer"):
        SqliteConfig(writer="fork").validate()


class DyingLogStore(LogStore):
    """A log store whose writer process dies on a record saying "die" (imported by the child)."""

    def apply(self, prepared: object) -> None:
        rows = prepared[0]  # type: ignore[index]
        if any(r[3] == "die" for r in rows):
            os._exit(3)
        super().apply(prepared)  # type: ignore[arg-type]


def test_on_the_event_loop_a_writer_dying_mid_request_fails_it_and_the_next_starts_again(tmp_path: Path) -> None:
    async def main() -> None:
        store = DyingLogStore(tmp_path)
        store.create()
        writer = WriterProcess(store, background_checkpoint=False)
        try:
            req = writer.encode([_log(1)])
            assert req is not None
            await writer.send_async(req)
            first = writer.pid
            dying = writer.encode([_log(2, message="die")])
            assert dying is not None
            with pytest.raises(WriterGone, match="exited"):
                await writer.send_async(dying)
            assert not writer.running
            again = writer.encode([_log(3)])
            assert again is not None
            await writer.send_async(again)
            assert writer.starts == 2 and writer.pid != first
            # concurrent callers on one loop (writes and retention) are answered in order
            results = {}

            async def put(i: int) -> None:
                r = writer.encode([_log(100 + i)])
                assert r is not None
                await writer.send_async(r)
                results[i] = "ok"

            async def purge() -> None:
                results["deleted"] = await writer.call_async(b"x", __import__("pickle").dumps(T0 + 2))

            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(put, i)
                tg.start_soon(purge)
            assert results["deleted"] == 1 and sum(v == "ok" for v in results.values()) == 5
            got = sorted(r.ts - T0 for r in store.search(None, from_ns=0, to_ns=2**63 - 1, limit=100))
            assert got == [3, 100, 101, 102, 103, 104]
        finally:
            await anyio.to_thread.run_sync(writer.close)
            store.close()

    anyio.run(main)


def test_kept_read_connections_see_each_commit_and_close_with_the_store(tmp_path: Path) -> None:
    """reader() keeps one connection per thread (the caller's close() leaves it open): a query
    through it still sees every commit made since its last use, by this process or a writer process."""
    import threading

    store = LogStore(tmp_path)
    store.open()
    writer = WriterProcess(LogStore(tmp_path), background_checkpoint=False)
    try:
        seen = []
        for i in range(3):
            store.write_batches([[_log(2 * i, ts=10 + 2 * i)]])  # this process
            writer.write_batches([[_log(2 * i + 1, ts=11 + 2 * i)]])  # the writer process
            conn = store.reader()
            seen.append(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
            conn.close()
            assert store.reader() is conn  # kept for this thread
        assert seen == [2, 4, 6]
        other: list[object] = []
        t = threading.Thread(target=lambda: other.append(store.reader()))
        t.start()
        t.join()
        assert other[0] is not conn
    finally:
        writer.close()
        store.close()
    with pytest.raises(Exception, match="closed"):
        conn.execute("SELECT 1")


def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer committing without pause while another connection checkpoints every 20 ms: those
    checkpoints alone never let SQLite start the WAL over (it grew to 2 GB in 16 s of OTLP ingest);
    with the writer's own checkpoint at WRITER_CHECKPOINT_PAGES the WAL stays near that size."""
    import threading

    from airisd_plugins.outputs.sqlite import base

    monkeypatch.setattr(base, "WRITER_CHECKPOINT_PAGES", 256)
    writer = LogStore(tmp_path)
    writer.open(background_checkpoint=True)
    checkpointer = LogStore(tmp_path)  # as the daemon's: its own connection to the same file
    checkpointer._created = True
    wal = tmp_path / "logs.db-wal"
    stop = time.monotonic() + 3.0
    written = 0

    def write() -> None:
        nonlocal written
        while time.monotonic() < stop:
            batch = [LogRecord(ts=written + i, level="INFO", service=f"s{i % 20}", message=f"line {written + i}")
                     for i in range(500)]  # fmt: skip
            writer.write_batches([batch])
            written += len(batch)

    thread = threading.Thread(target=write)
    thread.start()
    biggest = 0
    try:
        while thread.is_alive():
            time.sleep(0.02)
            checkpointer.checkpoint()
            biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
    finally:
        thread.join()
        checkpointer.close()
        writer.close()
    db_pages = (tmp_path / "logs.db").stat().st_size // 4096
    assert written > 20_000 and db_pages > 300  # enough was written to make the WAL grow
    assert biggest < 8 * 1024 * 1024, (biggest, written, db_pages)


def test_a_wal_grown_behind_a_long_read_shrinks_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader holding its snapshot keeps every checkpoint from reaching the WAL's end, so the
    WAL grows; once the reader is gone and the WAL starts over, it is cut back to the limit
    (journal_size_limit) instead of keeping its high-water size on disk."""
    from airisd_plugins.outputs.sqlite import base

    monkeypatch.setattr(base, "WRITER_CHECKPOINT_PAGES", 256)  # 1 MiB
    limit = 256 * 4096
    writer = LogStore(tmp_path)
    writer.open(background_checkpoint=True)
    wal = tmp_path / "logs.db-wal"
    written = 0

    def write(batches: int) -> None:
        nonlocal written
        for _ in range(batches):
            batch = [LogRecord(ts=written + i + 1, level="INFO", service="s", message=f"line {written + i} " * 8)
                     for i in range(500)]  # fmt: skip
            writer.write_batches([batch])
            written += len(batch)

    reader = sqlite3.connect(tmp_path / "logs.db")
    try:
        write(1)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM logs").fetchone()[0] == 500  # the snapshot holds
        write(40)
        grown = wal.stat().st_size
        assert grown > 4 * limit, grown
    finally:
        reader.close()
    for _ in range(3):  # a checkpoint that reaches the end, then a write that starts the WAL over
        writer.checkpoint()
        write(1)
    try:
        assert wal.stat().st_size <= limit, (wal.stat().st_size, grown)
        assert writer.wconn.execute("SELECT count(*) FROM logs").fetchone()[0] == written
    finally:
        writer.close()
