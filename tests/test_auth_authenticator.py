"""The Authenticator: headers to principals, roles to permissions, login with throttling; redact."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth import Authenticator, LoginThrottle, Principal, ScryptParams, redact
from airisd.auth.principal import ROLE_SCOPES, ROLES, SCOPES
from airisd.errors import Forbidden, RateLimited, Unauthorized, ValidationError

SECRET = "Xq3-v9LpA7Zr1mN5bT8cW2kD6hJ0sF4gY_eUoIiQ"
ADMIN_PW = "admin-password-1"
FAST = ScryptParams(log2_n=4, r=8, p=1)
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, secs: float) -> None:
        self.t += secs


def make(data_dir: Path, clock: FakeClock) -> Authenticator:
    auth = Authenticator.open(
        data_dir, jwt_secret=SECRET, clock=clock, params=FAST, throttle=LoginThrottle(clock=clock)
    )
    auth.users.bootstrap_admin(ADMIN_PW)
    auth.users.add("wanda", "writer", "writer-pass-1")
    auth.users.add("rita", "reader", "reader-pass-1")
    return auth


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(tmp_path: Path, clock: FakeClock) -> Iterator[Authenticator]:
    a = make(tmp_path, clock)
    yield a
    a.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authenticator]:
    a = make(tmp_path_factory.mktemp("auth"), FakeClock())
    yield a
    a.close()


def unauthorized(auth: Authenticator, header: str | None, *secrets: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        auth.authenticate_header(header)
    exc = info.value
    assert exc.code == "UNAUTHORIZED" and exc.status == 401
    text = exc.message + repr(exc.details)
    for secret in (*secrets, SECRET):
        assert secret not in text
    return exc


# --- headers ---------------------------------------------------------------------------------------


def test_login_then_bearer(auth: Authenticator) -> None:
    token, expires_in = auth.login("admin", ADMIN_PW, "127.0.0.1")
    assert expires_in == 3600
    principal = auth.authenticate_header(f"Bearer {token}")
    assert (principal.sub, principal.role, principal.kind) == ("admin", "admin", "jwt")


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(auth: Authenticator, header: str | None) -> None:
    exc = unauthorized(auth, header)
    assert exc.details["reason"] == "missing"
    assert "Bearer" in exc.message


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer \x00", "Bearer ключ", "Basic !!!", "Basic " + "A" * 20000],
)
def test_malformed_headers(auth: Authenticator, header: str) -> None:
    unauthorized(auth, header)


@pytest.mark.parametrize("scheme", ["Digest", "Negotiate", "JWT", "eyJhbGciOiJIUzI1NiJ9"])
def test_unsupported_schemes(auth: Authenticator, scheme: str) -> None:
    token, _ = auth.login("admin", ADMIN_PW, None)
    exc = unauthorized(auth, f"{scheme} {token}", token)
    assert exc.details["reason"] == "scheme"


def test_every_accepted_scheme_carries_jwts_and_api_keys(auth: Authenticator) -> None:
    token, _ = auth.login("wanda", "writer-pass-1", None)
    key = auth.api_keys.create("host-01", "writer").key
    for credential, kind in ((token, "jwt"), (key, "api_key")):
        headers = [
            f"Bearer {credential}",
            f"bearer   {credential}  ",
            f"Token {credential}",
            f"ApiKey {credential}",
            "Basic " + base64.b64encode(f"host-01:{credential}".encode()).decode(),
            "Basic " + base64.b64encode(f"{credential}:".encode()).decode(),
        ]
        for header in headers:
            assert auth.authenticate_header(header).kind == kind, header


def test_basic_with_an_account_password_is_refused(auth: Authenticator) -> None:
    """Basic carries only tokens and keys: checking a password per request would cost a scrypt."""
    unauthorized(auth, "Basic " + base64.b64encode(f"admin:{ADMIN_PW}".encode()).decode(), ADMIN_PW)


def test_revoked_api_key_is_refused(auth: Authenticator) -> None:
    new = auth.api_keys.create("host-01", "writer")
    assert auth.authenticate_header(f"Bearer {new.key}").sub == "host-01"
    auth.api_keys.revoke("host-01")
    exc = unauthorized(auth, f"Bearer {new.key}", new.key)
    assert exc.details["reason"] == "revoked"


def test_tokens_die_with_password_change_role_change_and_deletion(
    auth: Authenticator, clock: FakeClock
) -> None:
    old, _ = auth.login("rita", "reader-pass-1", None)
    clock.advance(1)
    auth.users.passwd("rita", "reader-pass-2")
    assert unauthorized(auth, f"Bearer {old}", old).details["reason"] == "revoked"
    fresh, _ = auth.login("rita", "reader-pass-2", None)
    assert auth.authenticate_header(f"Bearer {fresh}").sub == "rita"  # issued in the same second: valid
    auth.users.set_role("rita", "writer")
    unauthorized(auth, f"Bearer {fresh}", fresh)
    promoted, _ = auth.login("rita", "reader-pass-2", None)
    assert auth.authenticate_header(f"Bearer {promoted}").role == "writer"
    auth.users.delete("rita")
    unauthorized(auth, f"Bearer {promoted}", promoted)


def test_expired_token_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    token, ttl = auth.login("admin", ADMIN_PW, None)
    clock.advance(ttl + 60)
    assert unauthorized(auth, f"Bearer {token}", token).details["reason"] == "expired"


garbage_headers = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.tuples(
        st.sampled_from(["Bearer ", "Basic ", "Token ", "ApiKey ", "bearer\t", "BASIC "]),
        st.text(max_size=200),
    ).map("".join),
    st.binary(max_size=200).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.from_regex(r"Bearer airisd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", fullmatch=True),
    st.from_regex(r"Bearer eyJ[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,50}", fullmatch=True),
)


@settings(max_examples=1000, deadline=None)
@given(header=garbage_headers)
def test_garbage_authorization_headers_are_always_unauthorized(shared: Authenticator, header: str) -> None:
    with pytest.raises(Unauthorized) as info:
        shared.authenticate_header(header)
    assert info.value.code == "UNAUTHORIZED"


# --- authorisation ---------------------------------------------------------------------------------


EXPECTED = {
    ("admin", "read"): True,
    ("admin", "write"): True,
    ("admin", "admin"): True,
    ("writer", "read"): False,
    ("writer", "write"): True,
    ("writer", "admin"): False,
    ("reader", "read"): True,
    ("reader", "write"): False,
    ("reader", "admin"): False,
}


def test_role_scope_table_is_the_documented_one() -> None:
    assert {(r, s): s in ROLE_SCOPES[r] for r in ROLES for s in SCOPES} == EXPECTED


@pytest.mark.parametrize(("role", "scope"), list(EXPECTED))
def test_authorize(auth: Authenticator, role: str, scope: str) -> None:
    principal = Principal("someone", role, "jwt")
    if EXPECTED[(role, scope)]:
        auth.authorize(principal, scope)
        return
    with pytest.raises(Forbidden) as info:
        auth.authorize(principal, scope)
    assert info.value.status == 403 and info.value.code == "FORBIDDEN"
    assert info.value.details == {"role": role, "scope": scope}


def test_reader_asking_for_write_is_forbidden_end_to_end(auth: Authenticator) -> None:
    token, _ = auth.login("rita", "reader-pass-1", None)
    assert auth.require(f"Bearer {token}", "read").sub == "rita"
    with pytest.raises(Forbidden):
        auth.require(f"Bearer {token}", "write")
    reader_key = auth.api_keys.create("dashboards", "reader").key
    with pytest.raises(Forbidden):
        auth.require(f"Bearer {reader_key}", "write")


def test_unknown_scope_is_a_programming_error(auth: Authenticator) -> None:
    with pytest.raises(ValueError):
        auth.authorize(Principal("a", "admin"), "delete")


# --- login -----------------------------------------------------------------------------------------


def test_login_failures_share_one_message(auth: Authenticator) -> None:
    with pytest.raises(Unauthorized) as wrong:
        auth.login("admin", "wrong-password", "10.0.0.1")
    with pytest.raises(Unauthorized) as unknown:
        auth.login("mallory", "wrong-password", "10.0.0.2")
    assert wrong.value.message == unknown.value.message


@pytest.mark.parametrize(
    ("username", "password", "field"), [("", "x", "username"), ("admin", None, "password")]
)
def test_login_validates_fields(auth: Authenticator, username: str, password: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        auth.login(username, password, None)
    assert info.value.details["field"] == field


def test_login_is_throttled_and_recovers(
    auth: Authenticator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(5):
        with pytest.raises(Unauthorized):
            auth.login("admin", "guess-password", "203.0.113.7")
    hashed: list[str] = []
    real = auth.users.authenticate

    def counting(name: str, password: str) -> Principal:
        hashed.append(name)
        return real(name, password)

    monkeypatch.setattr(auth.users, "authenticate", counting)
    with pytest.raises(RateLimited) as info:
        auth.login("admin", ADMIN_PW, "198.51.100.4")  # the right password, but the user is locked
    assert info.value.retry_after_secs == 1
    assert hashed == []  # a locked attempt costs no scrypt
    clock.advance(1)
    token, _ = auth.login("admin", ADMIN_PW, "198.51.100.4")
    assert hashed == ["admin"]
    assert auth.authenticate_header(f"Bearer {token}").role == "admin"
    # the guessing address keeps its count: its next failure locks it for longer, for every user
    with pytest.raises(Unauthorized):
        auth.login("rita", "guess-password", "203.0.113.7")
    with pytest.raises(RateLimited) as info:
        auth.login("rita", "reader-pass-1", "203.0.113.7")
    assert info.value.retry_after_secs == 2
    assert auth.login("rita", "reader-pass-1", "192.0.2.1")[1] == 3600


# --- redact ----------------------------------------------------------------------------------------


def test_redact_masks_secrets_tokens_and_keys(auth: Authenticator) -> None:
    token, _ = auth.login("admin", ADMIN_PW, None)
    new = auth.api_keys.create("host-01", "writer")
    line = (
        f"login admin password={ADMIN_PW} secret={SECRET} url=https://hooks.example/x?token={SECRET} "
        f"header=Bearer {token} key={new.key} raw={token}"
    )
    out = redact(line, [ADMIN_PW, SECRET, "", None, "adm"])
    for secret in (ADMIN_PW, SECRET, token, new.key, new.key.split("_")[-1]):
        assert secret not in out
    assert f"airisd_{new.id}_[REDACTED]" in out  # the key id stays, so the log says which key
    assert "login admin" in out  # short values are not treated as secrets


def test_redact_authorization_header_dump() -> None:
    out = redact("headers={'Authorization': 'Token abc.def', 'Accept': '*/*'}")
    assert "abc.def" not in out and "Accept" in out


def test_redact_url_encoded_secret() -> None:
    secret = "p@ss/w0rd&more"
    out = redact("https://x/?pw=p%40ss%2Fw0rd%26more", [secret])
    assert "p%40ss" not in out


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=20),
    st.lists(st.text(max_size=30), max_size=5),
)
def test_redact_leaves_no_copy_of_a_secret(secret: str, parts: list[str]) -> None:
    text = secret.join(parts) + secret
    assert secret not in redact(text, [secret])
