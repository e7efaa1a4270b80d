"""The ``auth.db`` SQLite file shared by the user store and the API key store.

One connection guarded by a lock: auth calls are short, come from the event loop or worker threads,
and must never see "database is locked" from their own process. The file holds password and key
hashes, so it is created with mode 0600 (SQLite gives its -wal and -shm files the same mode).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from airisd.errors import ConfigError

DB_FILE_NAME: Final = "auth.db"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'writer', 'reader')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'writer', 'reader')),
    secret_sha256 BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class AuthDB:
    """Opens (creating if needed) ``<data_dir>/auth.db`` and serialises access to it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                with contextlib.suppress(PermissionError):
                    os.fchmod(
                        fd, 0o600
                    )  # it holds password hashes: tighten a copy restored with a loose mode
        finally:
            os.close(fd)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # account changes are rare; survive power loss
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._conn.close()
                raise ConfigError(
                    f"{self.path} was written by a newer airisd "
                    f"(schema {version}, this one knows {SCHEMA_VERSION})",
                    details={"file": str(self.path)},
                )
            self._conn.executescript(_SCHEMA)  # idempotent; executescript commits on its own
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def in_dir(cls, data_dir: Path) -> AuthDB:
        return cls(Path(data_dir) / DB_FILE_NAME)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction: read-check-write sequences stay atomic across
        processes, e.g. the CLI adding a user while the daemon bootstraps the admin."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
