"""Long-lived API keys for agents, usable wherever a bearer token is.

A key reads ``airisd_<id>_<secret>``: the 16-hex-digit id is not secret (it is what lists, logs and
``revoke`` show), the 43-character secret carries 256 random bits. Only SHA-256 of the whole key is
stored: with that much entropy a slow hash adds nothing, and verification stays cheap on every
request. Verified keys are cached for ``cache_secs``, so a revocation made by another process (the
CLI) takes effect within that time; one made through this store takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from airisd.auth.db import AuthDB
from airisd.auth.principal import Principal
from airisd.auth.users import check_name, check_role
from airisd.errors import NotFound, Unauthorized, ValidationError

KEY_PREFIX: Final = "airisd_"
KEY_RE: Final = re.compile(r"^airisd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
INVALID_KEY: Final = "invalid API key"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    name: str
    role: str
    created_at: int
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just created. ``key`` is shown once and never stored."""

    id: str
    name: str
    role: str
    created_at: int
    key: str

    def __repr__(self) -> str:
        return f"NewApiKey(id={self.id!r}, name={self.name!r}, role={self.role!r})"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


class ApiKeyStore:
    def __init__(
        self,
        db: AuthDB,
        *,
        clock: Callable[[], float] = time.time,
        cache_secs: float = 5.0,
        max_cached: int = 10_000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._cache_secs = cache_secs
        self._max_cached = max_cached
        self._cache: dict[str, tuple[float, bytes, Principal]] = {}

    @classmethod
    def open(cls, data_dir: Path, **kwargs: Any) -> ApiKeyStore:
        return cls(AuthDB.in_dir(data_dir), **kwargs)

    def create(self, name: str, role: str) -> NewApiKey:
        """A new key for ``name`` (unique among active keys) with ``role``."""
        check_name(name)
        check_role(role)
        now = int(self._clock())
        for _ in range(3):  # an id collision among 2^64 is next to impossible, but cheap to retry
            key_id = secrets.token_hex(8)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            try:
                with self._db.transaction() as conn:
                    if conn.execute(
                        "SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)
                    ).fetchone():
                        raise ValidationError(
                            f"an active API key named {name!r} exists; revoke it first or pick another name",
                            details={"field": "name"},
                        )
                    conn.execute(
                        "INSERT INTO api_keys(id, name, role, secret_sha256, created_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (key_id, name, role, _digest(key), now),
                    )
            except sqlite3.IntegrityError:
                continue
            return NewApiKey(key_id, name, role, now, key)
        raise RuntimeError("could not allocate an API key id")

    def list(self, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
        """Keys without their secrets, oldest first."""
        sql = "SELECT id, name, role, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._db.reading() as conn:
            rows = conn.execute(sql + " ORDER BY created_at, id").fetchall()
        return [ApiKeyInfo(*row) for row in rows]

    def revoke(self, id_or_name: str) -> ApiKeyInfo:
        """Revoke the active key with this id, or else with this name."""
        if not isinstance(id_or_name, str) or not id_or_name:
            raise ValidationError("give the API key's id or name", details={"field": "id"})
        now = int(self._clock())
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id, name, role, created_at FROM api_keys"
                " WHERE revoked_at IS NULL AND (id = ? OR name = ?) "
                "ORDER BY id = ? DESC LIMIT 1",
                (id_or_name, id_or_name, id_or_name),
            ).fetchone()
            if row is None:
                raise NotFound(f"no active API key with id or name {id_or_name!r}", details={"field": "id"})
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, row[0]))
        self._cache.pop(row[0], None)
        return ApiKeyInfo(row[0], row[1], row[2], row[3], now)

    def verify(self, key: str) -> Principal:
        """The key's principal (kind ``api_key``, token_id its id); ``Unauthorized`` when the key is
        malformed, unknown, wrong or revoked."""
        match = KEY_RE.match(key) if isinstance(key, str) else None
        if match is None:
            raise Unauthorized("malformed API key", details={"reason": "malformed"})
        key_id = match.group(1)
        digest = _digest(key)
        now = self._clock()
        cached = self._cache.get(key_id)
        if (
            cached is not None
            and now - cached[0] < self._cache_secs
            and hmac.compare_digest(cached[1], digest)
        ):
            return cached[2]
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT name, role, secret_sha256, revoked_at FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None or not hmac.compare_digest(bytes(row[2]), digest):
            raise Unauthorized(INVALID_KEY, details={"reason": "invalid"})
        if row[3] is not None:
            self._cache.pop(key_id, None)
            raise Unauthorized("API key has been revoked", details={"reason": "revoked"})
        principal = Principal(row[0], row[1], "api_key", key_id)
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[key_id] = (now, digest, principal)
        return principal
