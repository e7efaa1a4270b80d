"""API keys: shown once, stored hashed, listed without secrets, refused once revoked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth.apikeys import KEY_RE, ApiKeyStore
from airisd.auth.db import DB_FILE_NAME, AuthDB
from airisd.errors import NotFound, Unauthorized, ValidationError

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
def db(tmp_path: Path) -> Iterator[AuthDB]:
    db = AuthDB.in_dir(tmp_path)
    yield db
    db.close()


@pytest.fixture
def keys(db: AuthDB, clock: FakeClock) -> ApiKeyStore:
    return ApiKeyStore(db, clock=clock)


def test_create_and_verify(keys: ApiKeyStore) -> None:
    new = keys.create("host-01", "writer")
    assert re.fullmatch(r"airisd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", new.key)
    assert new.key.startswith(f"airisd_{new.id}_")
    assert new.key not in repr(new)
    principal = keys.verify(new.key)
    assert (principal.sub, principal.role, principal.kind, principal.token_id) == (
        "host-01",
        "writer",
        "api_key",
        new.id,
    )


def test_keys_are_stored_hashed_and_listed_without_secrets(
    tmp_path: Path, keys: ApiKeyStore, clock: FakeClock
) -> None:
    made = []
    for i in range(3):
        made.append(keys.create(f"host-{i}", "writer"))
        clock.advance(1)
    listed = keys.list()
    assert [(k.id, k.name, k.role) for k in listed] == [(m.id, m.name, m.role) for m in made]  # oldest first
    for info in listed:
        assert not hasattr(info, "key")
    content = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_FILE_NAME))
    for new in made:
        secret = new.key[len(f"airisd_{new.id}_") :]
        assert len(secret) == 43
        assert secret.encode() not in content


def test_revoked_key_is_refused(keys: ApiKeyStore) -> None:
    new = keys.create("host-01", "writer")
    keys.verify(new.key)  # now cached
    revoked = keys.revoke("host-01")
    assert revoked.id == new.id and revoked.revoked_at is not None
    with pytest.raises(Unauthorized) as info:
        keys.verify(new.key)
    assert info.value.details["reason"] == "revoked"
    assert new.key not in info.value.message
    assert keys.list() == []
    assert [k.id for k in keys.list(include_revoked=True)] == [new.id]


def test_revoke_by_id_and_reuse_the_name(keys: ApiKeyStore) -> None:
    first = keys.create("host-01", "writer")
    with pytest.raises(ValidationError, match="active API key named"):
        keys.create("host-01", "reader")
    keys.revoke(first.id)
    second = keys.create("host-01", "reader")
    assert keys.verify(second.key).role == "reader"
    with pytest.raises(Unauthorized):
        keys.verify(first.key)
    with pytest.raises(NotFound):
        keys.revoke(first.id)  # already revoked
    with pytest.raises(NotFound):
        keys.revoke("nobody")


def test_revocation_by_another_process_is_seen_within_the_cache_time(
    db: AuthDB, keys: ApiKeyStore, clock: FakeClock
) -> None:
    new = keys.create("host-01", "writer")
    keys.verify(new.key)
    cli = ApiKeyStore(db, clock=clock)
    cli.revoke(new.id)
    assert keys.verify(new.key).sub == "host-01"  # still cached
    clock.advance(5)
    with pytest.raises(Unauthorized):
        keys.verify(new.key)


def test_wrong_secret_with_a_real_id_is_refused(keys: ApiKeyStore) -> None:
    new = keys.create("host-01", "writer")
    keys.verify(new.key)  # cached: the cache must compare the secret too
    forged = new.key[:-4] + ("AAAA" if not new.key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized) as info:
        keys.verify(forged)
    assert info.value.details["reason"] == "invalid"


@pytest.mark.parametrize(
    "bad", ["", "airisd_", "airisd_0123_abc", "airisd_" + "g" * 16 + "_" + "a" * 43, "Bearer x", "a" * 5000]
)
def test_malformed_keys_are_refused(keys: ApiKeyStore, bad: str) -> None:
    with pytest.raises(Unauthorized):
        keys.verify(bad)


@pytest.fixture(scope="module")
def shared_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiKeyStore]:
    db = AuthDB.in_dir(tmp_path_factory.mktemp("keys"))
    store = ApiKeyStore(db)
    store.create("real", "admin")
    yield store
    db.close()


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=100) | st.from_regex(KEY_RE, fullmatch=True))
def test_random_keys_are_always_unauthorized(shared_keys: ApiKeyStore, key: str) -> None:
    with pytest.raises(Unauthorized):
        shared_keys.verify(key)


@pytest.mark.parametrize(
    ("name", "role", "field"), [("bad name", "writer", "name"), ("ok", "superuser", "role")]
)
def test_create_validates(keys: ApiKeyStore, name: str, role: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        keys.create(name, role)
    assert info.value.details["field"] == field
