"""What every per-signal SQLite store shares.

A store owns one database file. All writes happen on one writer thread (the output's), through
``write(items)``, which runs inside one transaction that the caller commits: concurrent requests
are group-committed together. Reads use read connections of their own (WAL lets readers run
beside the writer), one kept per worker thread, and are run in a worker thread by the caller.

Durability: WAL with ``synchronous=NORMAL`` survives ``kill -9`` of the daemon (the WAL is in the
OS page cache once COMMIT returns), not a power loss; ``durability = "full"`` in the config switches
to ``synchronous=FULL`` for that.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

# Read connections a store keeps (one per worker thread that queried it); past this many, a
# reader is opened and closed per call as before. Each keeps up to _READER_CACHE_KIB of pages.
_MAX_KEPT_READERS = 8
_READER_CACHE_KIB = 16 * 1024
# With background checkpoints, the writer still checkpoints itself once the WAL reaches this many
# pages (64 MiB): see open().
WRITER_CHECKPOINT_PAGES = 16384


class _KeptConnection(sqlite3.Connection):
    """A read connection the store keeps for its thread: the caller's close() leaves it open
    (every reader call site closes what reader() gave it), the store's close() closes it."""

    kept = False

    def close(self) -> None:
        if not self.kept:
            super().close()

    def close_kept(self) -> None:
        self.kept = False
        super().close()


class SignalStore:
    """Base class: subclasses set ``filename`` and ``SCHEMA`` and implement ``write``."""

    filename: ClassVar[str] = ""
    SCHEMA: ClassVar[str] = ""
    item_type: ClassVar[type]  # what write() takes a list of (a writer process decodes into it)
    # What prepare() returns, for a writer process to decode; None: prepare() is not split out.
    prepared_type: ClassVar[Any] = None

    def __init__(self, data_dir: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(data_dir) / self.filename
        self.synchronous = synchronous
        self._wconn: sqlite3.Connection | None = None
        self._cconn: sqlite3.Connection | None = None  # the checkpointer's
        self._ckpt_lock = threading.Lock()
        self._created = False  # the file and schema exist (open() or create())
        self._local = threading.local()  # this thread's kept read connection
        self._kept: list[_KeptConnection] = []
        self._kept_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------
    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        conn: sqlite3.Connection
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                   factory=_KeptConnection)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA cache_size=-{_READER_CACHE_KIB if readonly else 65536}")  # KiB
        return conn

    def open(self, *, background_checkpoint: bool = False) -> None:
        """Create the file and schema; keep the writer connection. Called once, on the writer thread.

        ``background_checkpoint``: the caller runs ``checkpoint()`` every second or so, and commits
        no longer copy the WAL into the database themselves (a quarter of the commit's time). Yet
        SQLite starts the WAL over only after a checkpoint that reached its last frame, which a
        checkpoint from another connection never does while commits keep coming (the WAL grew to
        2 GB in 16 s of OTLP ingest, beside a 122 MB database). So the writer keeps an automatic
        checkpoint at WRITER_CHECKPOINT_PAGES: rare, and cheap, since the background one has
        already copied all but the last second's pages."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wconn = self._connect()
        if background_checkpoint:
            self._wconn.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        # A WAL that grew past this (a long query held the checkpoints back) is cut back to it
        # when it next starts over, instead of keeping its high-water size on disk.
        page_size = self._wconn.execute("PRAGMA page_size").fetchone()[0]
        self._wconn.execute(f"PRAGMA journal_size_limit={WRITER_CHECKPOINT_PAGES * page_size}")
        self._wconn.executescript(self.SCHEMA)
        self.after_open(self._wconn)
        self._created = True

    def create(self) -> None:
        """Create the file and schema, and close: for a daemon whose writes happen in a writer
        process, so that queries find the tables before the first write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.executescript(self.SCHEMA)
        finally:
            conn.close()
        self._created = True

    def after_open(self, conn: sqlite3.Connection) -> None:
        """Hook for subclasses: load caches, migrate."""

    @property
    def wconn(self) -> sqlite3.Connection:
        assert self._wconn is not None, "store not opened"
        return self._wconn

    def reader(self) -> sqlite3.Connection:
        """A read connection; the caller closes it. It is this thread's, kept between calls (up to
        _MAX_KEPT_READERS a store): opening one and loading its schema cost ~0.9 ms, most of a
        short query (a trace by id: 1.1 -> 0.2 ms). Statements run in autocommit, so each starts
        a read transaction that sees everything committed before it; callers consume their
        cursors, so none holds an old snapshot into the next call."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn  # type: ignore[no-any-return]
        conn = self._connect(readonly=True)
        self.configure_reader(conn)
        with self._kept_lock:
            if len(self._kept) < _MAX_KEPT_READERS:
                assert isinstance(conn, _KeptConnection)
                conn.kept = True
                self._kept.append(conn)
                self._local.conn = conn
        return conn

    def configure_reader(self, conn: sqlite3.Connection) -> None:
        """Hook for subclasses: settings of a new read connection."""

    def probe(self) -> None:
        """Open the file afresh and read it (health checks: a kept connection would not notice the
        file gone)."""
        conn = self._connect(readonly=True)
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()

    # -- writing (writer thread only) --------------------------------------------------------
    def write_batches(self, batches: list[list[Any]]) -> None:
        """Write several requests' items in one transaction (group commit)."""
        self._in_transaction(self.write, batches)

    def _in_transaction(self, step: Callable[[Any], None], parts: list[Any]) -> None:
        """step() each part, all in one transaction; on failure roll back and forget caches."""
        conn = self.wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for part in parts:
                step(part)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.after_rollback()
            raise

    def write(self, items: list[Any]) -> None:
        raise NotImplementedError

    # A store may split write() in two: prepare(items), pure (rows, JSON, counts), which the
    # daemon runs when the writes are in a writer process, so that the process that holds the
    # database does only what needs it; and apply(prepared), on the writer. Then write(items) is
    # apply(prepare(items)) and prepared_type says what prepare() returns.
    def prepare(self, items: list[Any]) -> Any:
        raise NotImplementedError

    def apply(self, prepared: Any) -> None:
        raise NotImplementedError

    def apply_batches(self, prepared: list[Any]) -> None:
        """apply() of several prepared batches in one transaction (as write_batches)."""
        self._in_transaction(self.apply, prepared)

    def after_rollback(self) -> None:
        """Hook: forget caches that may now name rows that were rolled back."""

    def delete_before(self, cutoff_ns: int) -> int:
        """Retention: delete what is older than cutoff_ns; return how many rows went."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database (PASSIVE: never blocks the writer or readers),
        from a connection of its own, so that the WAL does not grow without bound."""
        with self._ckpt_lock:
            if self._cconn is None:
                if not self._created:
                    return
                self._cconn = self._connect()
            self._cconn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept = self._kept, []
            self._local = threading.local()
        for conn in kept:
            conn.close_kept()
        with self._ckpt_lock:
            if self._cconn is not None:
                self._cconn.close()
                self._cconn = None
        if self._wconn is not None:
            try:
                self._wconn.execute("PRAGMA optimize")
            finally:
                self._wconn.close()
                self._wconn = None
