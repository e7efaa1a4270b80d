"""The password user store: bootstrap, administration, login, and hashes that are never plaintext."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth.db import DB_FILE_NAME, AuthDB
from airisd.auth.passwords import ScryptParams, hash_password, parse_hash, verify_password
from airisd.auth.users import LOGIN_FAILED, ConfigUser, UserStore, parse_config_users
from airisd.errors import ConfigError, NotFound, Unauthorized, ValidationError

FAST = ScryptParams(log2_n=4, r=8, p=1)  # cheap for tests; the stored format is the same
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, secs: float) -> None:
        self.t += secs


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[UserStore]:
    db = AuthDB.in_dir(tmp_path)
    yield UserStore(db, params=FAST, clock=clock)
    db.close()


def raw_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(tmp_path / DB_FILE_NAME)
    try:
        return conn.execute("SELECT name, role, password_hash FROM users").fetchall()
    finally:
        conn.close()


def file_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_FILE_NAME))


# --- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_from_env_password(store: UserStore) -> None:
    assert store.bootstrap_admin("correct horse battery") is None  # nothing to show
    assert store.authenticate("admin", "correct horse battery").role == "admin"
    # afterwards a no-op, even with another value: the variable only seeds the first start
    assert store.bootstrap_admin("another password!") is None
    assert store.authenticate("admin", "correct horse battery").role == "admin"
    with pytest.raises(Unauthorized):
        store.authenticate("admin", "another password!")


def test_bootstrap_generates_a_password_once(tmp_path: Path, store: UserStore, clock: FakeClock) -> None:
    generated = store.bootstrap_admin(None)
    assert generated is not None and len(generated) >= 20
    assert store.authenticate("admin", generated).role == "admin"
    assert store.bootstrap_admin(None) is None
    assert store.bootstrap_admin("") is None
    reopened = UserStore(AuthDB.in_dir(tmp_path), params=FAST, clock=clock)  # a restart
    assert reopened.bootstrap_admin(None) is None
    assert [u.name for u in reopened.list()] == ["admin"]


def test_bootstrap_refuses_a_weak_env_password(store: UserStore) -> None:
    with pytest.raises(ConfigError, match="AIRISD_ADMIN_PASSWORD must be at least 8") as info:
        store.bootstrap_admin("short")
    assert info.value.details == {"key": "AIRISD_ADMIN_PASSWORD"}
    assert store.list() == []


def test_bootstrap_skips_when_an_admin_exists(store: UserStore) -> None:
    store.add("root-op", "admin", "password-1234")
    assert store.bootstrap_admin(None) is None
    assert [u.name for u in store.list()] == ["root-op"]


def test_bootstrap_skips_when_config_declares_an_admin(tmp_path: Path, clock: FakeClock) -> None:
    users = [ConfigUser("ops", "admin", hash_password("password-1234", params=FAST))]
    store = UserStore(AuthDB.in_dir(tmp_path), config_users=users, params=FAST, clock=clock)
    assert store.bootstrap_admin(None) is None
    assert [(u.name, u.source) for u in store.list()] == [("ops", "config")]


# --- hashes ----------------------------------------------------------------------------------------


def test_password_hashes_are_never_plaintext(tmp_path: Path, store: UserStore) -> None:
    passwords = {"admin": "first-admin-pass", "w1": "writer-pass-123", "r1": "reader-pass-123"}
    store.bootstrap_admin(passwords["admin"])
    store.add("w1", "writer", passwords["w1"])
    store.add("r1", "reader", passwords["r1"])
    store.passwd("r1", "reader-pass-456")
    passwords["r1-new"] = "reader-pass-456"
    rows = raw_rows(tmp_path)
    assert len(rows) == 3
    for _name, _role, encoded in rows:
        assert encoded.startswith("$scrypt$ln=4,r=8,p=1$")
        for pw in passwords.values():
            assert pw not in encoded
    content = file_bytes(tmp_path)
    for pw in passwords.values():
        assert pw.encode() not in content
    salts = {parse_hash(row[2])[1] for row in rows}
    assert len(salts) == 3  # a salt per user


def test_same_password_hashes_differently() -> None:
    assert hash_password("same password", params=FAST) != hash_password("same password", params=FAST)


def test_auth_db_is_private(tmp_path: Path, store: UserStore) -> None:
    store.add("w1", "writer", "writer-pass-123")
    assert stat.S_IMODE((tmp_path / DB_FILE_NAME).stat().st_mode) == 0o600


def test_loose_auth_db_mode_is_tightened(tmp_path: Path) -> None:
    AuthDB.in_dir(tmp_path).close()
    (tmp_path / DB_FILE_NAME).chmod(0o644)
    AuthDB.in_dir(tmp_path).close()
    assert stat.S_IMODE((tmp_path / DB_FILE_NAME).stat().st_mode) == 0o600


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_hash_verifies_only_its_own_password(password: str, other: str) -> None:
    encoded = hash_password(password, params=FAST)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_garbage_hashes_raise_value_error_only(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hash(text)


def test_hash_parameters_are_bounded() -> None:
    huge = "$scrypt$ln=24,r=64,p=1$" + "A" * 22 + "$" + "A" * 43
    with pytest.raises(ValueError, match="256 MiB"):
        parse_hash(huge)


# --- administration --------------------------------------------------------------------------------


def test_add_list_passwd_delete(store: UserStore) -> None:
    store.add("alice", "writer", "alice-pass-1")
    store.add("bob", "reader", "bob-pass-12")
    assert [(u.name, u.role, u.source) for u in store.list()] == [
        ("alice", "writer", "db"),
        ("bob", "reader", "db"),
    ]
    store.passwd("alice", "alice-pass-2")
    with pytest.raises(Unauthorized):
        store.authenticate("alice", "alice-pass-1")
    assert store.authenticate("alice", "alice-pass-2").role == "writer"
    store.set_role("bob", "writer")
    assert store.get("bob") is not None and store.get("bob").role == "writer"  # type: ignore[union-attr]
    store.delete("bob")
    assert store.get("bob") is None
    with pytest.raises(NotFound):
        store.delete("bob")
    with pytest.raises(NotFound):
        store.passwd("bob", "whatever-123")


@pytest.mark.parametrize(
    ("name", "role", "password", "field"),
    [
        ("", "reader", "password-1", "name"),
        ("has space", "reader", "password-1", "name"),
        ("-leading", "reader", "password-1", "name"),
        ("x" * 65, "reader", "password-1", "name"),
        ("ok", "root", "password-1", "role"),
        ("ok", "reader", "short", "password"),
        ("ok", "reader", "x" * 1025, "password"),
        ("ok", "reader", "nul\x00inside", "password"),
    ],
)
def test_add_validates_fields(store: UserStore, name: str, role: str, password: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        store.add(name, role, password)
    assert info.value.details["field"] == field
    assert password not in info.value.message or len(password) < 8


def test_duplicate_user_is_refused(store: UserStore) -> None:
    store.add("alice", "writer", "alice-pass-1")
    with pytest.raises(ValidationError, match="already exists"):
        store.add("alice", "reader", "alice-pass-2")


def test_last_admin_can_not_be_deleted_or_demoted(store: UserStore) -> None:
    store.bootstrap_admin("admin-pass-123")
    with pytest.raises(ValidationError, match="last admin"):
        store.delete("admin")
    with pytest.raises(ValidationError, match="last admin"):
        store.set_role("admin", "reader")
    store.add("second", "admin", "second-pass-1")
    store.delete("admin")
    assert [u.name for u in store.list()] == ["second"]


# --- login -----------------------------------------------------------------------------------------


def test_unknown_user_and_wrong_password_look_the_same(
    store: UserStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same message, and the same scrypt work (same parameters, one call): no user enumeration."""
    store.add("alice", "writer", "alice-pass-1")
    calls: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def counting(password: bytes, **kw: Any) -> bytes:
        calls.append((kw["n"], kw["r"], kw["p"]))
        return real(password, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    store._dummy()  # warm the dummy hash so both attempts below do exactly one scrypt
    calls.clear()
    with pytest.raises(Unauthorized) as wrong:
        store.authenticate("alice", "wrong-pass-1")
    wrong_calls = list(calls)
    calls.clear()
    with pytest.raises(Unauthorized) as unknown:
        store.authenticate("nobody", "wrong-pass-1")
    assert wrong.value.message == unknown.value.message == LOGIN_FAILED
    assert wrong.value.details == unknown.value.details
    assert wrong_calls == calls == [(1 << FAST.log2_n, FAST.r, FAST.p)]


@pytest.mark.parametrize(
    ("name", "password"),
    [("", "x"), ("alice", ""), ("a" * 300, "pw-123456"), ("alice", "p" * 2000), (None, "x"), ("alice", 7)],
)
def test_authenticate_refuses_odd_input(store: UserStore, name: Any, password: Any) -> None:
    store.add("alice", "writer", "alice-pass-1")
    with pytest.raises(Unauthorized, match=LOGIN_FAILED):
        store.authenticate(name, password)


def test_corrupt_stored_hash_refuses_instead_of_crashing(tmp_path: Path, store: UserStore) -> None:
    store.add("alice", "writer", "alice-pass-1")
    conn = sqlite3.connect(tmp_path / DB_FILE_NAME)
    conn.execute("UPDATE users SET password_hash = 'garbage' WHERE name = 'alice'")
    conn.commit()
    conn.close()
    with pytest.raises(Unauthorized):
        store.authenticate("alice", "alice-pass-1")


def test_hash_is_upgraded_on_login_when_parameters_change(tmp_path: Path, clock: FakeClock) -> None:
    db = AuthDB.in_dir(tmp_path)
    UserStore(db, params=FAST, clock=clock).add("alice", "writer", "alice-pass-1")
    stronger = ScryptParams(log2_n=5, r=8, p=1)
    store = UserStore(db, params=stronger, clock=clock)
    before = store.token_state("alice")
    store.authenticate("alice", "alice-pass-1")
    assert raw_rows(tmp_path)[0][2].startswith("$scrypt$ln=5,r=8,p=1$")
    assert store.authenticate("alice", "alice-pass-1").sub == "alice"
    clock.advance(10)
    assert store.token_state("alice") == before  # an upgrade does not log anyone out


def test_token_state_tracks_changes_and_caches(tmp_path: Path, store: UserStore, clock: FakeClock) -> None:
    store.add("alice", "writer", "alice-pass-1")
    state = store.token_state("alice")
    assert state is not None and state.role == "writer"
    clock.advance(100)
    store.passwd("alice", "alice-pass-2")
    after = store.token_state("alice")
    assert after is not None and after.valid_after == int(clock())
    # a change made by another process (the CLI) is seen once the cache entry ages out
    other = UserStore(AuthDB.in_dir(tmp_path), params=FAST, clock=clock)
    other.delete("alice")
    assert store.token_state("alice") is not None
    clock.advance(5)
    assert store.token_state("alice") is None


# --- config users ----------------------------------------------------------------------------------


def test_config_users_log_in_and_are_read_only(tmp_path: Path, clock: FakeClock) -> None:
    items = [
        {"name": "grafana", "role": "reader", "password_hash": hash_password("grafana-pass", params=FAST)}
    ]
    store = UserStore(
        AuthDB.in_dir(tmp_path), config_users=parse_config_users(items), params=FAST, clock=clock
    )
    assert store.authenticate("grafana", "grafana-pass").role == "reader"
    with pytest.raises(ValidationError, match="config file"):
        store.passwd("grafana", "new-password-1")
    with pytest.raises(ValidationError, match="config file"):
        store.add("grafana", "admin", "new-password-1")
    with pytest.raises(ValidationError, match="config file"):
        store.delete("grafana")
    assert "grafana-pass" not in repr(parse_config_users(items))


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ({"name": "x", "role": "reader", "password_hash": "plaintext!"}, "auth.users[0].password_hash"),
        ({"name": "x", "role": "root", "password_hash": "$scrypt$"}, "auth.users[0].role"),
        ({"name": "bad name", "role": "reader", "password_hash": "$scrypt$"}, "auth.users[0].name"),
        ({"name": "x", "role": "reader"}, "auth.users[0].password_hash"),
        ({"name": "x", "role": "reader", "password_hash": "h", "passwd": "oops"}, "auth.users[0].passwd"),
    ],
)
def test_config_user_errors_name_the_key(item: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_users([item])
    assert info.value.details["key"] == key
    assert "plaintext!" not in info.value.message


def test_duplicate_config_user_is_refused() -> None:
    encoded = hash_password("password-1", params=FAST)
    item = {"name": "x", "role": "reader", "password_hash": encoded}
    with pytest.raises(ConfigError, match="defined twice"):
        parse_config_users([item, item])
