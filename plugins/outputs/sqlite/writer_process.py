"""A store's writes in a process of its own (``writer = "process"``).

Why: the daemon is one Python process, so its event loop (HTTP, JSON, validation) and the store's
writer thread share one GIL. The writer releases the GIL around every ``sqlite3_step`` (once per
row in ``executemany``) and then waits up to the switch interval (5 ms) to get it back from a busy
event loop, so under load the two alternate instead of running side by side: measured, the daemon
used one core of two (event loop 55%, writer 44%). A writer process has a GIL of its own: the
daemon prepares the rows (the store's ``prepare()``, pure Python), the writer does the SQLite work
and what needs the database (``apply()``), each on its own core.

Protocol, over the child's stdin and stdout (never stdout for anything else: the child moves
``print`` and friends to stderr): frames of ``kind (1 byte) + length (4 bytes LE) + payload``.

    daemon -> writer   m: items as msgpack    p: items pickled (what msgpack cannot carry)
                       r: the store's prepare() of one or more batches, a msgpack list (stores
                          that split their write; one transaction for the list)
                       x: delete_before(cutoff), pickled     q: close and exit
    writer -> daemon   o: done, result pickled               e: failed, (class name, message) pickled
                       d: the msgpack items did not decode as the store's type: send them pickled
                       r: ready (the store is open)

The daemon's event loop writes and reads the pipe (non-blocking ends). Concurrent callers (a write
and retention) send one at a time and read the answers in the order sent; a store without
``prepare()`` has one exchange at a time, since its ``d`` answer asks for a second one. The daemon
answers the ingest request only after ``o``: the writer's COMMIT happened, so the acknowledged
data is in the WAL, as with the writer thread. The writer ignores SIGINT and SIGTERM (the daemon
stops it with ``q`` after its last flush) and exits when its stdin closes, so a daemon killed with
-9 does not leave it behind. A writer that dies is noticed at the next request (EOF on its stdout),
reported as a transient error (the pipeline retries) and started again.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import pickle
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
from airisd_plugins.outputs.sqlite.base import SignalStore

from airisd import errors

_HEADER = struct.Struct("<cI")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_BYTES = 8 << 20
_READY_TIMEOUT_SECS = 60.0
_REQUEST_TIMEOUT_SECS = 300.0  # a write of the largest group commit takes seconds; this is a hang


def _send(out: IO[bytes], kind: bytes, payload: bytes = b"") -> None:
    out.write(_HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await anyio.wait_writable(fd)


async def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        try:
            chunk = os.read(fd, size)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def _read_frame(fd: int) -> tuple[bytes, bytes] | None:
    head = await _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    kind, size = _HEADER.unpack(head)
    payload = await _read_exact(fd, size) if size else b""
    return None if payload is None else (kind, payload)


def _write_all_blocking(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def _read_exact_blocking(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        try:
            chunk = os.read(fd, size)
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame_blocking(fd: int) -> tuple[bytes, bytes] | None:
    head = _read_exact_blocking(fd, _HEADER.size)
    if head is None:
        return None
    kind, size = _HEADER.unpack(head)
    payload = _read_exact_blocking(fd, size) if size else b""
    return None if payload is None else (kind, payload)


def _result(frame: tuple[bytes, bytes]) -> Any:
    kind, payload = frame
    if kind == b"e":
        name, message = pickle.loads(payload)
        raise _error(name, message)
    return pickle.loads(payload) if payload else None


def _widen(pipe: IO[bytes]) -> None:
    """Make a pipe hold a whole request (up to the system's pipe-max-size), so that sending one is
    one write(2): each partial write would give up the GIL and wait for it again behind a busy
    event loop (measured: a 1000-record request took 60-110 ms to send through a 64 KiB pipe)."""
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, min(limit, _PIPE_BYTES))
    except (OSError, ValueError):
        pass  # not Linux, or not allowed: smaller writes, slower, still correct


def _receive(inp: IO[bytes]) -> tuple[bytes, bytes] | None:
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    kind, size = _HEADER.unpack(head)
    payload = inp.read(size) if size else b""
    if len(payload) < size:
        return None
    return kind, payload


def _error(name: str, message: str) -> Exception:
    """The daemon-side exception for a writer's failure: the same class where it is one of ours
    or sqlite3's (so the output maps them as before), a RuntimeError naming it otherwise."""
    cls = getattr(errors, name, None) or getattr(sqlite3, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except TypeError:
            pass
    return RuntimeError(f"{name}: {message}")


@dataclass
class Request:
    kind: bytes
    payload: bytes
    fallback: list[Any] | None = None  # sent pickled if the writer cannot decode the msgpack


class WriterGone(errors.TransientError):
    """The writer process is not there (it died, or could not start); the next request starts it."""


class WriterProcess:
    """The daemon's side: ``write_batches`` and ``delete_before`` of a store, run by a child
    process that holds the store open. The blocking calls are for worker threads and tests; the
    daemon uses ``send_async``/``call_async`` on its event loop, where concurrent callers (a write
    and retention) are ordered: a request may be sent while the previous one is still being
    written, and the answers are read in the order sent."""

    def __init__(self, store: SignalStore, *, background_checkpoint: bool) -> None:
        self.store = store
        self.background_checkpoint = background_checkpoint
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # the blocking calls, and starting the process
        self._send_lock: anyio.Lock | None = None  # the async calls: one sender at a time ...
        self._reply_lock: anyio.Lock | None = None  # ... and answers read in the order sent
        self._encoder = msgspec.msgpack.Encoder()
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def pipelines(self) -> bool:
        """Whether a request may go before the previous one is answered: not if a request can
        need the decode fallback (a second exchange), i.e. only for stores that prepare rows."""
        return self.store.prepared_type is not None

    # -- lifecycle -------------------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        cls = type(self.store)
        # -c, not -m: the package imports this module, and runpy would warn about running it twice.
        cmd = [sys.executable, "-c", f"import sys, {__name__} as w; sys.exit(w.main(sys.argv[1:]))",
               f"{cls.__module__}:{cls.__qualname__}", str(self.store.path.parent), self.store.synchronous,
               "1" if self.background_checkpoint else "0"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert proc.stdout is not None and proc.stdin is not None
        _widen(proc.stdin)
        # The daemon's ends stay non-blocking: the event loop waits on them in its selector, and
        # the blocking calls wait with select().
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        # The child opens the store (schema, caches) before it says ready; a broken one says why.
        timer = threading.Timer(_READY_TIMEOUT_SECS, proc.kill)
        timer.start()
        try:
            frame = _read_frame_blocking(proc.stdout.fileno())
        finally:
            timer.cancel()
        if frame is None or frame[0] != b"r":
            self._reap(proc)
            detail = pickle.loads(frame[1]) if frame is not None and frame[0] == b"e" else ("exited", "")
            raise WriterGone(f"sqlite writer for {self.store.path.name} did not start: {detail[0]}: {detail[1]}")
        self.starts += 1
        return proc

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _gone(self, proc: subprocess.Popen[bytes], what: str) -> WriterGone:
        """Forget a writer that failed an exchange (once, whoever notices first)."""
        if self._proc is proc:
            self._proc = None
        if proc.poll() is None:
            proc.kill()
        self._reap(proc)
        return WriterGone(f"sqlite writer for {self.store.path.name} {what} (code {proc.returncode}); "
                          "it is started again for the next write")

    def start(self) -> None:
        with self._lock:
            if not self.running:
                if self._proc is not None:
                    self._reap(self._proc)
                self._proc = self._spawn()

    def close(self) -> None:
        """Ask the writer to close the store (final PRAGMA optimize) and wait for it; safe twice."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.poll() is None:
                assert proc.stdin is not None and proc.stdout is not None
                with contextlib.suppress(OSError, ValueError):
                    _write_all_blocking(proc.stdin.fileno(), _HEADER.pack(b"q", 0))
                    _read_frame_blocking(proc.stdout.fileno())
            self._reap(proc)

    # -- blocking requests -----------------------------------------------------------------------
    def _call(self, kind: bytes, payload: bytes, fallback: Any = None) -> Any:
        with self._lock:
            if not self.running:
                if self._proc is not None:
                    self._reap(self._proc)
                self._proc = self._spawn()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
            try:
                _write_all_blocking(wfd, _HEADER.pack(kind, len(payload)) + payload)
                frame = _read_frame_blocking(rfd)
                if frame is not None and frame[0] == b"d" and fallback is not None:
                    again = pickle.dumps(fallback, protocol=5)
                    _write_all_blocking(wfd, _HEADER.pack(b"p", len(again)) + again)
                    frame = _read_frame_blocking(rfd)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                raise self._gone(proc, "exited")
        return _result(frame)

    def write_batches(self, batches: list[list[Any]]) -> None:
        request = self.encode([item for batch in batches for item in batch])
        if request is not None:
            self.send(request)

    def encode(self, items: list[Any]) -> Request | None:
        """The request that writes items: the store's prepare() when it has one, else the items.
        The daemon calls it on its event loop: a worker thread running Python beside the event
        loop would make the two take turns on the GIL (the writer's reason to be)."""
        if not items:
            return None
        if self.store.prepared_type is not None:
            return self.request_of([self.prepare_part(items)])
        try:
            return Request(b"m", self._encoder.encode(items), items)
        except (TypeError, OverflowError, msgspec.EncodeError):  # e.g. an int beyond 64 bits
            return Request(b"p", pickle.dumps(items, protocol=5))

    def prepare_part(self, items: list[Any]) -> bytes:
        """The store's prepare() of items, encoded: one part of a write request (request_of). Only
        for a store that prepares (``pipelines``)."""
        return self._encoder.encode(self.store.prepare(items))

    def request_of(self, parts: list[bytes]) -> Request:
        """One write request, one transaction, of parts made by prepare_part(), in order."""
        return Request(b"r", self._encoder.encode([msgspec.Raw(p) for p in parts]))

    def send(self, request: Request) -> None:
        self._call(request.kind, request.payload, fallback=request.fallback)

    def delete_before(self, cutoff_ns: int) -> int:
        return int(self._call(b"x", pickle.dumps(cutoff_ns)))

    # -- requests on the event loop --------------------------------------------------------------
    async def send_async(self, request: Request) -> None:
        """send() on the event loop: the pipe's reads and writes wait in the loop's selector, not
        in a worker thread that would have to win the GIL back from the loop after each (measured:
        20-40 ms a request lost that way under load)."""
        if not self.pipelines:  # the decode fallback needs the pipe to itself
            await anyio.to_thread.run_sync(self.send, request)
            return
        await self.call_async(request.kind, request.payload)

    async def call_async(self, kind: bytes, payload: bytes) -> Any:
        """One request: sent as soon as the previous one is sent, its answer read in order.
        Shielded from cancellation (half an exchange would leave the pipe out of step) and bounded
        in time (a writer that hangs is killed, and every request waiting on it fails)."""
        if self._send_lock is None or self._reply_lock is None:
            self._send_lock, self._reply_lock = anyio.Lock(), anyio.Lock()
        send_lock, reply_lock = self._send_lock, self._reply_lock
        frame: tuple[bytes, bytes] | None = None
        proc: subprocess.Popen[bytes] | None = None
        with anyio.move_on_after(_REQUEST_TIMEOUT_SECS, shield=True) as scope:
            async with send_lock:
                if not self.running:
                    await anyio.to_thread.run_sync(self.start)
                proc = self._proc
                assert proc is not None and proc.stdin is not None and proc.stdout is not None
                try:
                    await _write_all(proc.stdin.fileno(), _HEADER.pack(kind, len(payload)) + payload)
                    sent = True
                except (OSError, ValueError):
                    sent = False
                await reply_lock.acquire()  # before the next sender: answers are read in order
            try:
                if sent and self._proc is proc:
                    with contextlib.suppress(OSError, ValueError):
                        frame = await _read_frame(proc.stdout.fileno())
            finally:
                reply_lock.release()
        if frame is None:
            if proc is None:
                raise WriterGone(f"sqlite writer for {self.store.path.name} did not start in time")
            raise self._gone(proc, "stopped answering" if scope.cancelled_caught else "exited")
        return _result(frame)

# -- the writer process --------------------------------------------------------------------------
def _serve(store: SignalStore, inp: IO[bytes], out: IO[bytes]) -> None:
    decoder = msgspec.msgpack.Decoder(list[store.item_type])  # type: ignore[name-defined]
    prepared = msgspec.msgpack.Decoder(list[store.prepared_type]) if store.prepared_type is not None else None  # type: ignore[name-defined]
    while (frame := _receive(inp)) is not None:
        kind, payload = frame
        if kind == b"q":
            break
        try:
            if kind == b"m":
                try:
                    items = decoder.decode(payload)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    _send(out, b"d")
                    continue
                store.write_batches([items])
                result: Any = None
            elif kind == b"r" and prepared is not None:
                store.apply_batches(prepared.decode(payload))
                result = None
            elif kind == b"p":
                store.write_batches([pickle.loads(payload)])
                result = None
            elif kind == b"x":
                result = store.delete_before(pickle.loads(payload))
            else:
                raise ValueError(f"unknown request {kind!r}")
        except Exception as exc:
            _send(out, b"e", pickle.dumps((type(exc).__name__, str(exc))))
            continue
        _send(out, b"o", pickle.dumps(result) if result is not None else b"")
    store.close()
    _send(out, b"o")


def main(argv: list[str]) -> int:
    # The daemon stops the writer after its final flush; a terminal's Ctrl-C or systemd's SIGTERM
    # to the whole group must not stop it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # frames own the pipe: anything printed goes to stderr
    inp = sys.stdin.buffer
    target, directory, synchronous, background = argv
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
        store: SignalStore = cls(Path(directory), synchronous=synchronous)
        store.open(background_checkpoint=background == "1")
    except Exception as exc:
        _send(out, b"e", pickle.dumps((type(exc).__name__, str(exc))))
        return 1
    _send(out, b"r")
    try:
        _serve(store, inp, out)
    except BrokenPipeError:  # the daemon is gone
        store.close()
    return 0
