"""JWT issue and verification: every forgery and misuse is refused with Unauthorized."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth.secrets import JwtKeys, load_jwt_keys
from airisd.auth.tokens import REQUIRED_CLAIMS, TokenService
from airisd.errors import ConfigError, Unauthorized

SECRET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"  # 48 bytes
OTHER_SECRET = b"ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfe"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, secs: float) -> None:
        self.t += secs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token built by hand, so that the forgery does not depend on PyJWT's own refusals."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = sign(head.encode()) if sign else b""
    return head + "." + b64url(signature)


def hs256(key: bytes) -> Any:
    return lambda msg: hmac.new(key, msg, hashlib.sha256).digest()


def good_claims(now: float = T0, **overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": "airisd",
        "sub": "alice",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 3600,
        "jti": "abc123",
        "role": "reader",
    }
    claims.update(overrides)
    return claims


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> TokenService:
    return TokenService(SECRET, clock=clock)


def refused(service: TokenService, token: str, reason: str | None = None) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        service.verify(token)
    exc = info.value
    assert exc.code == "UNAUTHORIZED" and exc.status == 401
    if reason is not None:
        assert exc.details["reason"] == reason, exc.message
    text = exc.message + repr(exc.details)
    assert token not in text or not token  # never echoes the token
    assert SECRET.decode() not in text
    return exc


# --- the happy path --------------------------------------------------------------------------------


def test_issue_and_verify_round_trip(service: TokenService) -> None:
    token, expires_in = service.issue("alice", "writer")
    assert expires_in == 3600
    principal = service.verify(token)
    assert (principal.sub, principal.role, principal.kind) == ("alice", "writer", "jwt")
    assert principal.issued_at == int(T0) and principal.expires_at == int(T0) + 3600
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == set(REQUIRED_CLAIMS)
    assert claims["iss"] == "airisd" and claims["jti"] == principal.token_id
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_token_has_its_own_jti(service: TokenService) -> None:
    ids = {service.verify(service.issue("alice", "reader")[0]).token_id for _ in range(20)}
    assert len(ids) == 20


def test_repr_hides_the_secret(service: TokenService) -> None:
    assert SECRET.decode() not in repr(service)


def test_issue_rejects_bad_subject_or_role(service: TokenService) -> None:
    with pytest.raises(ValueError):
        service.issue("", "reader")
    with pytest.raises(ValueError):
        service.issue("alice", "root")


# --- forgeries -------------------------------------------------------------------------------------


def test_tampered_signature_is_refused(service: TokenService) -> None:
    token, _ = service.issue("alice", "reader")
    head, payload, sig = token.split(".")
    middle = len(sig) // 2
    flipped = sig[:middle] + ("A" if sig[middle] != "A" else "B") + sig[middle + 1 :]
    refused(service, f"{head}.{payload}.{flipped}", "signature")


def test_tampered_payload_is_refused(service: TokenService) -> None:
    token, _ = service.issue("alice", "reader")
    head, _payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["role"] = "admin"
    refused(service, f"{head}.{b64url(json.dumps(claims).encode())}.{sig}", "signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(service: TokenService, alg: str) -> None:
    refused(service, craft({"alg": alg, "typ": "JWT"}, good_claims(role="admin")), "algorithm")


def test_token_signed_with_another_key_is_refused(service: TokenService, clock: FakeClock) -> None:
    other = TokenService(OTHER_SECRET, clock=clock)
    token, _ = other.issue("alice", "admin")
    refused(service, token, "signature")


def test_other_hmac_algorithm_is_refused(service: TokenService) -> None:
    token = jwt.encode(good_claims(), SECRET + SECRET, algorithm="HS512")
    refused(service, token, "algorithm")


@pytest.fixture(scope="module")
def rsa_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    directory = tmp_path_factory.mktemp("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "jwt.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public_pem


@pytest.fixture
def rs_service(rsa_files: tuple[Path, bytes], tmp_path: Path, clock: FakeClock) -> TokenService:
    keys = load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=rsa_files[0])
    return TokenService(keys, clock=clock)


def test_rs256_round_trip(rs_service: TokenService) -> None:
    token, _ = rs_service.issue("bob", "admin")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert rs_service.verify(token).role == "admin"


def test_hs_rs_confusion_public_key_as_hmac_secret_is_refused(
    rs_service: TokenService, rsa_files: tuple[Path, bytes]
) -> None:
    """The classic attack: sign HS256 with the (public) RSA key and hope the verifier uses it as an
    HMAC secret. The configured algorithm is pinned, so the header's HS256 is not accepted."""
    public_pem = rsa_files[1]
    forged = craft({"alg": "HS256", "typ": "JWT"}, good_claims(role="admin"), hs256(public_pem))
    refused(rs_service, forged, "algorithm")
    # the same with the PEM's exact bytes stripped of the trailing newline, as some exploits do
    forged = craft({"alg": "HS256", "typ": "JWT"}, good_claims(role="admin"), hs256(public_pem.strip()))
    refused(rs_service, forged, "algorithm")


def test_rs_public_key_can_not_be_configured_as_hs_secret(rsa_files: tuple[Path, bytes]) -> None:
    with pytest.raises(ConfigError):
        TokenService(rsa_files[1])
    with pytest.raises(ConfigError):
        TokenService(JwtKeys("HS256", rsa_files[1], rsa_files[1]))


def test_rs_token_is_refused_by_an_hs_service(rs_service: TokenService, service: TokenService) -> None:
    token, _ = rs_service.issue("bob", "admin")
    refused(service, token, "algorithm")


def test_es256_round_trip_and_cross_refusal(
    tmp_path: Path, clock: FakeClock, rs_service: TokenService
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    es = TokenService(load_jwt_keys(data_dir=tmp_path, algorithm="ES256", private_key_file=path), clock=clock)
    token, _ = es.issue("carol", "writer")
    assert es.verify(token).sub == "carol"
    refused(rs_service, token, "algorithm")


def test_algorithm_argument_must_match_the_keys(tmp_path: Path, rsa_files: tuple[Path, bytes]) -> None:
    keys = load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=rsa_files[0])
    with pytest.raises(ConfigError):
        TokenService(keys, algorithm="HS256")
    with pytest.raises(ConfigError):
        TokenService(SECRET, algorithm="RS256")


# --- time ------------------------------------------------------------------------------------------


def test_expired_token_is_refused_after_the_leeway(service: TokenService, clock: FakeClock) -> None:
    token, ttl = service.issue("alice", "reader")
    clock.advance(ttl + service.leeway_secs - 1)
    assert service.verify(token).sub == "alice"  # inside the leeway
    clock.advance(1)
    refused(service, token, "expired")


def test_not_yet_valid_token_is_refused(clock: FakeClock) -> None:
    future = TokenService(SECRET, clock=FakeClock(T0 + 60))
    token, _ = future.issue("alice", "reader")
    present = TokenService(SECRET, clock=clock)
    refused(present, token, "not_yet_valid")
    clock.advance(60 - present.leeway_secs)
    assert present.verify(token).sub == "alice"


def test_nbf_in_the_future_is_refused(service: TokenService) -> None:
    refused(service, jwt.encode(good_claims(nbf=int(T0) + 600), SECRET, algorithm="HS256"), "not_yet_valid")


@pytest.mark.parametrize("claim", ["iat", "nbf", "exp"])
@pytest.mark.parametrize("value", ["1700003600", 1.7e9 + 0.5, True, None, [1]])
def test_non_integer_time_claims_are_refused(service: TokenService, claim: str, value: Any) -> None:
    refused(service, jwt.encode(good_claims(**{claim: value}), SECRET, algorithm="HS256"))


def test_ttl_is_validated() -> None:
    for bad in (0, -1, 10**9, True):
        with pytest.raises(ConfigError):
            TokenService(SECRET, ttl_secs=bad)


def test_short_secret_for_hs512_is_refused() -> None:
    with pytest.raises(ConfigError, match="too weak"):
        TokenService(SECRET[:32], algorithm="HS512")


# --- claims ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_missing_claim_is_refused(service: TokenService, claim: str) -> None:
    claims = good_claims()
    del claims[claim]
    exc = refused(service, jwt.encode(claims, SECRET, algorithm="HS256"), "missing_claim")
    assert claim in exc.message


def test_wrong_issuer_is_refused(service: TokenService) -> None:
    refused(service, jwt.encode(good_claims(iss="someone-else"), SECRET, algorithm="HS256"), "issuer")


def test_custom_issuer(clock: FakeClock) -> None:
    ours = TokenService(SECRET, issuer="airisd-prod", clock=clock)
    refused(ours, jwt.encode(good_claims(), SECRET, algorithm="HS256"), "issuer")
    assert ours.verify(ours.issue("a", "reader")[0]).sub == "a"


def test_audience_is_refused(service: TokenService) -> None:
    refused(service, jwt.encode(good_claims(aud="grafana"), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "overrides",
    [{"role": "root"}, {"role": ["admin"]}, {"sub": ""}, {"sub": 42}, {"sub": "x" * 300}, {"jti": 7}],
)
def test_bad_claim_values_are_refused(service: TokenService, overrides: dict[str, Any]) -> None:
    refused(service, jwt.encode(good_claims(**overrides), SECRET, algorithm="HS256"))


def test_oversized_and_malformed_tokens_are_refused(service: TokenService) -> None:
    refused(service, "a" * 9000, "malformed")
    refused(service, "a.b", "malformed")
    refused(service, "a.b.c.d", "malformed")
    refused(service, "", "missing")
    refused(service, "eyJhbGciOiJIUzI1NiJ9.e30.", None)


# --- fuzzing ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_is_always_unauthorized(token: str) -> None:
    service = TokenService(SECRET, clock=FakeClock())
    with pytest.raises(Unauthorized):
        service.verify(token)


segment = st.one_of(
    st.binary(max_size=80).map(b64url),
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.none()), max_size=6
    ).map(lambda d: b64url(json.dumps(d).encode())),
    st.sampled_from(
        [b64url(b'{"alg":"HS256","typ":"JWT"}'), b64url(b'{"alg":"none"}'), b64url(b"[]"), "", "!!"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(segment, segment, segment)
def test_random_three_part_tokens_are_always_unauthorized(head: str, payload: str, sig: str) -> None:
    service = TokenService(SECRET, clock=FakeClock())
    with pytest.raises(Unauthorized):
        service.verify(f"{head}.{payload}.{sig}")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*REQUIRED_CLAIMS, "aud", "x"]),
        st.from_type(type(None))
        | st.integers()
        | st.text(max_size=10)
        | st.booleans()
        | st.floats(allow_nan=True),
        max_size=9,
    )
)
def test_validly_signed_hostile_claims_never_crash(claims: dict[str, Any]) -> None:
    """Signed with the right key but any claim values: verified only when they are exactly right."""
    service = TokenService(SECRET, clock=FakeClock())
    token = craft({"alg": "HS256", "typ": "JWT"}, claims, hs256(SECRET))
    try:
        principal = service.verify(token)
    except Unauthorized:
        return
    assert principal.role in ("admin", "writer", "reader") and claims["iss"] == "airisd"
