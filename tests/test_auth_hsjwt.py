"""``airisd.auth.hsjwt`` against PyJWT: the same tokens out, the same verdicts (and refusal reasons)
in, so that dropping PyJWT from the HS* path changed nothing a client or an attacker can see."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth import hsjwt
from airisd.auth.tokens import REQUIRED_CLAIMS

SECRET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
ISSUER = "airisd"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pyjwt_verdict(token: str, algorithm: str = "HS256") -> str:
    """The reason TokenService gave when it decoded with PyJWT (the same mapping), or "ok"."""
    try:
        jwt.PyJWT(options={"enforce_minimum_key_length": True}).decode(
            token,
            SECRET,
            algorithms=[algorithm],
            issuer=ISSUER,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.MissingRequiredClaimError:
        return "missing_claim"
    except jwt.InvalidSignatureError:
        return "signature"
    except jwt.InvalidAlgorithmError:
        return "algorithm"
    except jwt.InvalidIssuerError:
        return "issuer"
    except jwt.InvalidAudienceError:
        return "audience"
    except jwt.DecodeError:
        return "malformed"
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, RecursionError, OverflowError):
        return "invalid"
    return "ok"


def our_verdict(token: str, algorithm: str = "HS256") -> str:
    try:
        hsjwt.decode(token, SECRET, algorithm, issuer=ISSUER, required=REQUIRED_CLAIMS)
    except hsjwt.TokenError as exc:
        return exc.reason
    return "ok"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "iat": 1, "nbf": 1, "exp": 2, "jti": "j", "role": "reader"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_tokens_are_byte_for_byte_pyjwts(algorithm: str) -> None:
    key = SECRET + SECRET
    for payload in (claims(), claims(sub="é ü", role="admin"), claims(jti="x" * 64, exp=2**40)):
        assert hsjwt.encode(payload, key, algorithm) == jwt.encode(payload, key, algorithm=algorithm)
        token = hsjwt.encode(payload, key, algorithm)
        assert jwt.decode(token, key, algorithms=[algorithm], options={"verify_exp": False}) == payload


def signed(header: dict[str, Any] | str, payload: dict[str, Any] | str, key: bytes = SECRET) -> str:
    head = header if isinstance(header, str) else b64url(json.dumps(header).encode())
    body = payload if isinstance(payload, str) else b64url(json.dumps(payload).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


HS = {"alg": "HS256", "typ": "JWT"}
CASES = {
    "valid": signed(HS, claims()),
    "alg none": signed({"alg": "none"}, claims()),
    "no alg": signed({"typ": "JWT"}, claims()),
    "HS512 header": signed({"alg": "HS512"}, claims()),
    "alg list": signed({"alg": ["HS256"]}, claims()),
    "other key": signed(HS, claims(), SECRET[::-1]),
    "missing jti": signed(HS, claims(jti=...)),
    "null role": signed(HS, claims(role=None)),
    "other issuer": signed(HS, claims(iss="x")),
    "numeric issuer": signed(HS, claims(iss=7)),
    "audience": signed(HS, claims(aud="grafana")),
    "empty audience": signed(HS, claims(aud="")),
    "numeric sub": signed(HS, claims(sub=7)),
    "list jti": signed(HS, claims(jti=["j"])),
    "kid not a string": signed({**HS, "kid": 1}, claims()),
    "kid string": signed({**HS, "kid": "k1"}, claims()),
    "crit unknown": signed({**HS, "crit": ["exp"]}, claims()),
    "crit empty": signed({**HS, "crit": []}, claims()),
    "crit b64 true": signed({**HS, "crit": ["b64"], "b64": True}, claims()),
    "b64 false": signed({**HS, "crit": ["b64"], "b64": False}, claims()),
    "payload array": signed(HS, b64url(b"[1]")),
    "payload not json": signed(HS, b64url(b"{nope")),
    "header array": signed(b64url(b"[]"), claims()),
    "padded signature": signed(HS, claims()) + "=",
    "junk in signature": signed(HS, claims())[:-2] + "!!",
    "non-canonical": signed(HS, claims())[:-1] + "B",
    "empty signature": signed(HS, claims()).rsplit(".", 1)[0] + ".",
    "non-ascii": signed(HS, claims())[:-1] + "é",
}


@pytest.mark.parametrize("name", CASES)
def test_same_verdict_as_pyjwt(name: str) -> None:
    assert our_verdict(CASES[name]) == pyjwt_verdict(CASES[name]), name


segment = st.one_of(
    st.binary(max_size=60).map(b64url),
    st.dictionaries(
        st.sampled_from([*REQUIRED_CLAIMS, "alg", "typ", "aud", "kid", "crit", "b64"]),
        st.one_of(st.integers(), st.text(max_size=6), st.none(), st.booleans(), st.just("HS256"), st.just(ISSUER)),
        max_size=8,
    ).map(lambda d: b64url(json.dumps(d).encode())),
    st.text(alphabet="AZaz09-_=.!é", max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(segment, segment, segment)
def test_random_tokens_get_pyjwts_verdict(head: str, payload: str, sig: str) -> None:
    token = f"{head}.{payload}.{sig}"
    assert our_verdict(token) == pyjwt_verdict(token)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "b64"]),
        st.one_of(st.just("HS256"), st.just(["b64"]), st.booleans(), st.integers(), st.none(), st.text(max_size=4)),
        max_size=5,
    ),
    st.dictionaries(
        st.sampled_from([*REQUIRED_CLAIMS, "aud", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=6), st.booleans(), st.just(ISSUER)),
        max_size=9,
    ),
)
def test_signed_hostile_headers_and_claims_get_pyjwts_verdict(header: dict[str, Any], payload: dict[str, Any]) -> None:
    token = signed(header, payload)
    assert our_verdict(token) == pyjwt_verdict(token)


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
        b'{"kty":"oct","k":"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"}',
        b"0\x82\x01\x220\r\x06\t*\x86H\x86\xf7\r\x01\x01\x01\x05\x00\x03\x82\x01\x0f\x00" + b"\x00" * 270,
    ],
)
def test_keys_that_are_not_secrets_are_unfit(key: bytes) -> None:
    problem = hsjwt.key_problem(key, "HS256")
    assert problem is not None and problem[0] == "unfit"


def test_short_keys_are_weak_per_hash() -> None:
    assert hsjwt.key_problem(SECRET[:32], "HS256") is None
    weak = hsjwt.key_problem(SECRET[:32], "HS512")
    assert weak is not None and weak[0] == "weak" and "32 bytes" in weak[1]
    assert hsjwt.key_problem(SECRET[:31], "HS256") is not None
