"""What every per-signal SQLite store shares.

A store owns one database file. All writes happen on one writer thread (the output's), through
``write(items)``, which runs inside one transaction that the caller commits: concurrent requests
are group-committed together. Reads open their own connection per call (WAL lets readers run
beside the writer) and are run in a worker thread by the caller.

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

    # -- connections -------------------------------------------------------------------------
    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
        return conn

    def open(self, *, background_checkpoint: bool = False) -> None:
        """Create the file and schema; keep the writer connection. Called once, on the writer thread.

        ``background_checkpoint``: the caller runs ``checkpoint()`` every second or so, and commits
        no longer copy the WAL into the database themselves (a quarter of the commit's time)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wconn = self._connect()
        if background_checkpoint:
            self._wconn.execute("PRAGMA wal_autocheckpoint=0")
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
        """A fresh read connection; the caller closes it."""
        return self._connect(readonly=True)

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
