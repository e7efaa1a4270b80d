"""Accounts that log in with a password: stored in ``auth.db``, or declared in the config file.

Passwords are kept only as scrypt hashes. Logging in with an unknown name costs the same scrypt work
as a wrong password and fails with the same message, so neither timing nor text tells which names
exist. Changing a password or role, or deleting the user, invalidates the tokens issued before.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from airisd.auth.db import AuthDB
from airisd.auth.passwords import (
    DEFAULT_PARAMS,
    MAX_PASSWORD_CHARS,
    ScryptParams,
    check_password_policy,
    hash_password,
    needs_rehash,
    parse_hash,
    verify_password,
)
from airisd.auth.principal import ROLES, Principal, is_role
from airisd.errors import Backpressure, ConfigError, NotFound, Unauthorized, ValidationError

__all__ = [
    "BOOTSTRAP_ADMIN",
    "ConfigUser",
    "TokenState",
    "UserInfo",
    "UserStore",
    "hash_password",
    "parse_config_users",
]

BOOTSTRAP_ADMIN: Final = "admin"
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
LOGIN_FAILED: Final = "invalid username or password"
HASH_HINT: Final = (
    "python3 -c 'import getpass; from airisd.auth import hash_password; "
    "print(hash_password(getpass.getpass()))'"
)
_BOOTSTRAPPED_KEY: Final = "admin_bootstrapped_at"
_CONFIG_USER_KEYS: Final = frozenset({"name", "role", "password_hash"})


@dataclass(frozen=True, slots=True)
class ConfigUser:
    """A read-only account from ``[[auth.users]]``; change it by editing the file."""

    name: str
    role: str
    password_hash: str

    def __repr__(self) -> str:
        return f"ConfigUser(name={self.name!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    role: str
    source: str  # "db" or "config"
    created_at: int | None = None
    updated_at: int | None = None


@dataclass(frozen=True, slots=True)
class TokenState:
    """What token verification needs to know about a user: the current role, and the time (epoch
    seconds) before which tokens were issued under an old password or role."""

    role: str
    valid_after: int


def check_name(name: object, *, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"{field} must be 1-64 characters: letters, digits, '.', '_', '@' or '-', "
            f"starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_role(role: object, *, field: str = "role") -> str:
    if not is_role(role):
        raise ValidationError(f"{field} must be one of {', '.join(ROLES)}", details={"field": field})
    return str(role)


def parse_config_users(items: Iterable[Mapping[str, Any]], *, source: str = "auth.users") -> list[ConfigUser]:
    """Check ``[[auth.users]]`` tables; ConfigError naming ``auth.users[i].key`` for the first bad one."""
    users: list[ConfigUser] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{where} must be a table with name, role and password_hash", details={"key": where}
            )
        unknown = sorted(set(item) - _CONFIG_USER_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}", details={"key": f"{where}.{unknown[0]}"}
            )
        for key in ("name", "role", "password_hash"):
            if key not in item:
                raise ConfigError(f"{where}.{key} is required", details={"key": f"{where}.{key}"})
        try:
            name = check_name(item["name"])
            role = check_role(item["role"])
        except ValidationError as exc:
            key = exc.details.get("field", "name")
            raise ConfigError(f"{where}.{exc.message}", details={"key": f"{where}.{key}"}) from None
        try:
            parse_hash(item["password_hash"])
        except ValueError as exc:
            raise ConfigError(
                f"{where}.password_hash is {exc}; make one with: {HASH_HINT}",
                details={"key": f"{where}.password_hash"},
            ) from None
        if name in seen:
            raise ConfigError(f"{where}.name {name!r} is defined twice", details={"key": f"{where}.name"})
        seen.add(name)
        users.append(ConfigUser(name, role, item["password_hash"]))
    return users


class UserStore:
    """Password accounts: ``auth.db`` rows plus read-only config users (which shadow nothing: a name
    may live in one place only).

    ``authenticate`` runs scrypt (~0.3 s): call it from a worker thread. At most
    ``max_concurrent_hashes`` hashes run at once, which bounds the memory and CPU a login flood takes.
    """

    def __init__(
        self,
        db: AuthDB,
        *,
        config_users: Iterable[ConfigUser] = (),
        params: ScryptParams = DEFAULT_PARAMS,
        clock: Callable[[], float] = time.time,
        state_cache_secs: float = 5.0,
        max_concurrent_hashes: int = 2,
        hash_wait_secs: float = 30.0,
    ) -> None:
        self._db = db
        self._config = {u.name: u for u in config_users}
        self.params = params.validate()
        self._clock = clock
        self._state_cache_secs = state_cache_secs
        self._state_cache: dict[str, tuple[float, TokenState | None]] = {}
        self._hash_slots = threading.BoundedSemaphore(max_concurrent_hashes)
        self._hash_wait_secs = hash_wait_secs
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, **kwargs: Any) -> UserStore:
        return cls(AuthDB.in_dir(data_dir), **kwargs)

    # --- first start -------------------------------------------------------------------------

    def bootstrap_admin(self, env_password: str | None) -> str | None:
        """On the first start, create the ``admin`` account.

        Its password is ``env_password`` (AIRISD_ADMIN_PASSWORD) when set; otherwise one is generated
        and returned so the caller can show it once on stderr. Afterwards (or when an admin already
        exists) this does nothing and returns None: the variable only seeds the first start.
        """
        if env_password == "":
            env_password = None
        if env_password is not None:
            try:
                check_password_policy(env_password, field="AIRISD_ADMIN_PASSWORD")
            except ValidationError as exc:
                raise ConfigError(exc.message, details={"key": "AIRISD_ADMIN_PASSWORD"}) from None
        if BOOTSTRAP_ADMIN in self._config and self._config[BOOTSTRAP_ADMIN].role != "admin":
            raise ConfigError(
                f"auth.users defines {BOOTSTRAP_ADMIN!r} with role {self._config[BOOTSTRAP_ADMIN].role}; "
                f"the first admin account needs that name",
                details={"key": "auth.users"},
            )
        config_admin = any(u.role == "admin" for u in self._config.values())
        with self._db.reading() as conn:
            if self._bootstrapped(conn):
                return None
        # hash outside the write transaction: scrypt is slow and the lock is shared with the CLI
        generated = None if env_password is not None else secrets.token_urlsafe(18)
        password = env_password if env_password is not None else generated
        assert password is not None
        encoded = None if config_admin else hash_password(password, params=self.params)
        now = int(self._clock())
        with self._db.transaction() as conn:
            if self._bootstrapped(conn):
                return None
            conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (_BOOTSTRAPPED_KEY, str(now)))
            has_admin = conn.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone()
            if config_admin or has_admin or encoded is None:
                return None
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (BOOTSTRAP_ADMIN,)).fetchone():
                raise ConfigError(
                    f"user {BOOTSTRAP_ADMIN!r} exists without the admin role and no admin exists; "
                    f"give it the admin role or add another admin",
                    details={"key": "users"},
                )
            conn.execute(
                "INSERT INTO users(name, role, password_hash, created_at, updated_at)"
                " VALUES (?, 'admin', ?, ?, ?)",
                (BOOTSTRAP_ADMIN, encoded, now, now),
            )
        return generated

    @staticmethod
    def _bootstrapped(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM meta WHERE key = ?", (_BOOTSTRAPPED_KEY,)).fetchone() is not None

    # --- administration ----------------------------------------------------------------------

    def _refuse_config_user(self, name: str) -> None:
        if name in self._config:
            raise ValidationError(
                f"user {name!r} is defined in the config file ([[auth.users]]); change it there",
                details={"field": "name"},
            )

    def add(self, name: str, role: str, password: str) -> UserInfo:
        check_name(name)
        check_role(role)
        check_password_policy(password)
        self._refuse_config_user(name)
        encoded = hash_password(password, params=self.params)
        now = int(self._clock())
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO users(name, role, password_hash, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, role, encoded, now, now),
                )
        except sqlite3.IntegrityError:
            raise ValidationError(f"user {name!r} already exists", details={"field": "name"}) from None
        self._forget(name)
        return UserInfo(name, role, "db", now, now)

    def passwd(self, name: str, password: str) -> None:
        """Set a new password; tokens issued before now stop working."""
        check_name(name)
        check_password_policy(password)
        self._refuse_config_user(name)
        encoded = hash_password(password, params=self.params)
        now = int(self._clock())
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE users SET password_hash = ?, updated_at = ?, tokens_valid_after = ? WHERE name = ?",
                (encoded, now, now, name),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no user named {name!r}", details={"field": "name"})
        self._forget(name)

    def set_role(self, name: str, role: str) -> None:
        """Change a user's role; tokens issued before now stop working."""
        check_name(name)
        check_role(role)
        self._refuse_config_user(name)
        now = int(self._clock())
        with self._db.transaction() as conn:
            row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no user named {name!r}", details={"field": "name"})
            if row[0] == "admin" and role != "admin":
                self._refuse_last_admin(conn, name)
            conn.execute(
                "UPDATE users SET role = ?, updated_at = ?, tokens_valid_after = ? WHERE name = ?",
                (role, now, now, name),
            )
        self._forget(name)

    def delete(self, name: str) -> None:
        check_name(name)
        self._refuse_config_user(name)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no user named {name!r}", details={"field": "name"})
            if row[0] == "admin":
                self._refuse_last_admin(conn, name)
            conn.execute("DELETE FROM users WHERE name = ?", (name,))
        self._forget(name)

    def _refuse_last_admin(self, conn: sqlite3.Connection, name: str) -> None:
        others = conn.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND name != ?", (name,)
        ).fetchone()[0]
        if others == 0 and not any(u.role == "admin" for u in self._config.values()):
            raise ValidationError(
                f"{name!r} is the last admin; add another admin first", details={"field": "name"}
            )

    def get(self, name: str) -> UserInfo | None:
        if name in self._config:
            return UserInfo(name, self._config[name].role, "config")
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT name, role, created_at, updated_at FROM users WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else UserInfo(row[0], row[1], "db", row[2], row[3])

    def list(self) -> list[UserInfo]:
        with self._db.reading() as conn:
            rows = conn.execute("SELECT name, role, created_at, updated_at FROM users").fetchall()
        users = [UserInfo(r[0], r[1], "db", r[2], r[3]) for r in rows if r[0] not in self._config]
        users += [UserInfo(u.name, u.role, "config") for u in self._config.values()]
        return sorted(users, key=lambda u: u.name)

    # --- login and token checks --------------------------------------------------------------

    def _record(self, name: str) -> tuple[str, str, bool] | None:
        """(role, password_hash, from_db) for ``name``."""
        if name in self._config:
            user = self._config[name]
            return user.role, user.password_hash, False
        with self._db.reading() as conn:
            row = conn.execute("SELECT role, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1], True)

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = hash_password(secrets.token_urlsafe(16), params=self.params)
            return self._dummy_hash

    def authenticate(self, name: str, password: str) -> Principal:
        """The principal for a correct name and password; ``Unauthorized`` with one message otherwise."""
        if (
            not isinstance(name, str)
            or not isinstance(password, str)
            or not name
            or len(name) > 256
            or len(password) > MAX_PASSWORD_CHARS
        ):
            raise Unauthorized(LOGIN_FAILED)
        record = self._record(name) if NAME_RE.match(name) else None
        if not self._hash_slots.acquire(timeout=self._hash_wait_secs):
            raise Backpressure("too many logins in progress; try again shortly", retry_after_secs=1)
        try:
            if record is None:
                verify_password(password, self._dummy())  # same work as a wrong password
                raise Unauthorized(LOGIN_FAILED)
            role, encoded, from_db = record
            try:
                ok = verify_password(password, encoded)
            except ValueError:
                ok = False  # a corrupt stored hash: refuse, never crash
            if not ok:
                raise Unauthorized(LOGIN_FAILED)
            if from_db and needs_rehash(encoded, self.params):
                self._rehash(name, encoded, password)
        finally:
            self._hash_slots.release()
        return Principal(name, role, "jwt")

    def _rehash(self, name: str, old: str, password: str) -> None:
        """Move a hash to the current parameters after a successful login (no token invalidation)."""
        new = hash_password(password, params=self.params)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?", (new, name, old)
            )

    def token_state(self, name: str) -> TokenState | None:
        """The user's current role and token floor, or None when the user no longer exists. Cached for
        ``state_cache_secs`` so that checking every request stays cheap; changes made in another
        process (the CLI) are seen within that time."""
        now = self._clock()
        cached = self._state_cache.get(name)
        if cached is not None and now - cached[0] < self._state_cache_secs:
            return cached[1]
        state: TokenState | None
        if name in self._config:
            state = TokenState(self._config[name].role, 0)
        else:
            with self._db.reading() as conn:
                row = conn.execute(
                    "SELECT role, tokens_valid_after FROM users WHERE name = ?", (name,)
                ).fetchone()
            state = None if row is None else TokenState(row[0], row[1])
        if len(self._state_cache) >= 10_000:
            self._state_cache.clear()
        self._state_cache[name] = (now, state)
        return state

    def _forget(self, name: str) -> None:
        self._state_cache.pop(name, None)
