"""A store's writes in a process of its own (``writer = "process"``).

Why: the daemon is one Python process, so its event loop (HTTP, JSON, validation) and the store's
writer thread share one GIL. The writer releases the GIL around every ``sqlite3_step`` (once per
row in ``executemany``) and then waits up to the switch interval (5 ms) to get it back from a busy
event loop, so under load the two alternate instead of running side by side: measured, the daemon
used one core of two (event loop 55%, writer 44%). A writer process has a GIL of its own: the
second core does the SQLite work and the row building, and the daemon only encodes the items.

Protocol, over the child's stdin and stdout (never stdout for anything else: the child moves
``print`` and friends to stderr): frames of ``kind (1 byte) + length (4 bytes LE) + payload``.

    daemon -> writer   m: items as msgpack    p: items pickled (what msgpack cannot carry)
                       r: the store's prepare(items) as msgpack (stores that split their write)
                       x: delete_before(cutoff), pickled     q: close and exit
    writer -> daemon   o: done, result pickled               e: failed, (class name, message) pickled
                       d: the msgpack items did not decode as the store's type: send them pickled
                       r: ready (the store is open)

The daemon sends one request and reads its answer before the next (one lock per store), and
answers the ingest request only after ``o``: the writer's COMMIT happened, so the acknowledged
data is in the WAL, as with the writer thread. The writer ignores SIGINT and SIGTERM (the daemon
stops it with ``q`` after its last flush) and exits when its stdin closes, so a daemon killed with
-9 does not leave it behind. A writer that dies is noticed at the next request (EOF on its stdout),
reported as a transient error (the pipeline retries) and started again.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import msgspec
from airisd_plugins.outputs.sqlite.base import SignalStore

from airisd import errors

_HEADER = struct.Struct("<cI")
_READY_TIMEOUT_SECS = 60.0


def _send(out: IO[bytes], kind: bytes, payload: bytes = b"") -> None:
    out.write(_HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


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


class WriterGone(errors.TransientError):
    """The writer process is not there (it died, or could not start); the next request starts it."""


class WriterProcess:
    """The daemon's side: ``write_batches`` and ``delete_before`` of a store, run by a child
    process that holds the store open. Blocking calls: run them in a worker thread."""

    def __init__(self, store: SignalStore, *, background_checkpoint: bool) -> None:
        self.store = store
        self.background_checkpoint = background_checkpoint
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    # -- lifecycle -------------------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        cls = type(self.store)
        # -c, not -m: the package imports this module, and runpy would warn about running it twice.
        cmd = [sys.executable, "-c", f"import sys, {__name__} as w; sys.exit(w.main(sys.argv[1:]))",
               f"{cls.__module__}:{cls.__qualname__}", str(self.store.path.parent), self.store.synchronous,
               "1" if self.background_checkpoint else "0"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert proc.stdout is not None
        # The child opens the store (schema, caches) before it says ready; a broken one says why.
        timer = threading.Timer(_READY_TIMEOUT_SECS, proc.kill)
        timer.start()
        try:
            frame = _receive(proc.stdout)
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

    def start(self) -> None:
        with self._lock:
            if not self.running:
                self._proc = self._spawn()

    def close(self) -> None:
        """Ask the writer to close the store (final PRAGMA optimize) and wait for it; safe twice."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    assert proc.stdin is not None and proc.stdout is not None
                    _send(proc.stdin, b"q")
                    _receive(proc.stdout)
                except (OSError, ValueError):
                    pass
            self._reap(proc)

    # -- requests --------------------------------------------------------------------------------
    def _call(self, kind: bytes, payload: bytes, fallback: Any = None) -> Any:
        with self._lock:
            if not self.running:
                if self._proc is not None:
                    self._reap(self._proc)
                self._proc = self._spawn()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            try:
                _send(proc.stdin, kind, payload)
                frame = _receive(proc.stdout)
                if frame is not None and frame[0] == b"d" and fallback is not None:
                    _send(proc.stdin, b"p", pickle.dumps(fallback, protocol=5))
                    frame = _receive(proc.stdout)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                self._proc = None
                self._reap(proc)
                raise WriterGone(f"sqlite writer for {self.store.path.name} exited (code {proc.returncode}); "
                                 "it is started again for the next write")  # fmt: skip
        kind, payload = frame
        if kind == b"e":
            name, message = pickle.loads(payload)
            raise _error(name, message)
        return pickle.loads(payload) if payload else None

    def write_batches(self, batches: list[list[Any]]) -> None:
        items = [item for batch in batches for item in batch]
        if not items:
            return
        if self.store.prepared_type is not None:  # the pure half of the write runs here
            self._call(b"r", self._encoder.encode(self.store.prepare(items)))
            return
        try:
            self._call(b"m", self._encoder.encode(items), fallback=items)
        except (TypeError, OverflowError, msgspec.EncodeError):  # e.g. an int beyond 64 bits
            self._call(b"p", pickle.dumps(items, protocol=5))

    def delete_before(self, cutoff_ns: int) -> int:
        return int(self._call(b"x", pickle.dumps(cutoff_ns)))


# -- the writer process --------------------------------------------------------------------------
def _serve(store: SignalStore, inp: IO[bytes], out: IO[bytes]) -> None:
    decoder = msgspec.msgpack.Decoder(list[store.item_type])  # type: ignore[name-defined]
    prepared = msgspec.msgpack.Decoder(store.prepared_type) if store.prepared_type is not None else None
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
                store.apply_batches([prepared.decode(payload)])
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
