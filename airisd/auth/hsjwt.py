"""HS256/384/512 JWTs with ``hmac`` and ``hashlib`` alone.

PyJWT imports ``cryptography`` (~9 MB of RSS) even for HMAC tokens, and HS256 is what the daemon
uses unless an RS/ES key file is configured; ``tokens.py`` keeps PyJWT, imported on demand, for
those. This module reproduces what PyJWT 2.x does for the HMAC algorithms, in the same order, so
the tokens and the refusals are the same: the compact form ``b64url(header).b64url(payload).b64url(sig)``
with the header ``{"alg":..,"typ":"JWT"}`` (sorted keys, no spaces), strict unpadded base64url,
the algorithm pinned before the signature is checked, a constant-time signature comparison, then
the payload's registered claims. Time claims are not checked here: ``TokenService`` checks them
against its clock on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any, Final

HASHES: Final[dict[str, Callable[..., Any]]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_PEM_MARKER: Final = re.compile(rb"----[- ](BEGIN|END) [A-Z0-9 ]+[- ]----")
_SSH_PREFIXES: Final = (
    b"ssh-ed25519",
    b"ssh-rsa",
    b"ssh-dss",
    b"ecdsa-sha2-nistp256",
    b"ecdsa-sha2-nistp384",
    b"ecdsa-sha2-nistp521",
)


class TokenError(Exception):
    """A refused token: ``reason`` is the one ``TokenService`` reports (``malformed``,
    ``algorithm``, ``signature``, ``missing_claim``, ``issuer``, ``audience``, ``invalid``)."""

    def __init__(self, reason: str, message: str, claim: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.claim = claim


def key_problem(key: bytes, algorithm: str) -> tuple[str, str] | None:
    """Why ``key`` can not sign ``algorithm`` tokens, as ``(kind, message)`` with kind ``unfit``
    (an asymmetric key or a JWK, not a secret) or ``weak`` (shorter than the hash); None if it can."""
    if not key:
        return "unfit", "HMAC key must not be empty"
    if _PEM_MARKER.search(key) or key.startswith(_SSH_PREFIXES) or _looks_like_der(key) or _looks_like_jwk(key):
        return "unfit", "the key is an asymmetric key, a certificate or a JWK, not an HMAC secret"
    minimum = HASHES[algorithm]().digest_size
    if len(key) < minimum:
        return "weak", (
            f"The HMAC key is {len(key)} bytes long, which is below the minimum recommended length of "
            f"{minimum} bytes for {algorithm.replace('HS', 'SHA')}. See RFC 7518 Section 3.2."
        )
    return None


def _looks_like_der(key: bytes) -> bool:
    """A DER SEQUENCE spanning the whole key that opens with another SEQUENCE: the shape of a
    SubjectPublicKeyInfo or an X.509 certificate (PyJWT asks ``cryptography`` to load them)."""
    if len(key) < 4 or key[0] != 0x30:
        return False
    first = key[1]
    if first < 0x80:
        length, header = first, 2
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or len(key) < 2 + count:
            return False
        length, header = int.from_bytes(key[2 : 2 + count], "big"), 2 + count
    return header + length == len(key) and len(key) > header and key[header] == 0x30


def _looks_like_jwk(key: bytes) -> bool:
    try:
        obj = json.loads(key)
    except RecursionError:
        return key.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"["))
    except ValueError:
        return False
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if "kty" in item:
                return True
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(segment: str) -> bytes:
    """Strict base64url as PyJWT 2.x reads it: up to two trailing ``=``, the URL-safe alphabet
    only, and the canonical encoding of the bytes (no stray bits in the last character)."""
    stripped = segment.rstrip("=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1:
        raise TokenError("malformed", "malformed token")
    if not _B64URL.fullmatch(stripped):
        raise TokenError("malformed", "malformed token")
    try:
        data = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "malformed token") from None
    if _b64encode(data).decode() != stripped:
        raise TokenError("malformed", "malformed token")
    return data


def _sign(signing_input: bytes, key: bytes, algorithm: str) -> bytes:
    return hmac.new(key, signing_input, HASHES[algorithm]).digest()


def encode(claims: dict[str, Any], key: bytes, algorithm: str) -> str:
    """The compact JWT for ``claims``, byte for byte what ``jwt.encode`` gives."""
    header = json.dumps({"typ": "JWT", "alg": algorithm}, separators=(",", ":"), sort_keys=True).encode()
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signing_input = _b64encode(header) + b"." + _b64encode(payload)
    return (signing_input + b"." + _b64encode(_sign(signing_input, key, algorithm))).decode()


def decode(token: str, key: bytes, algorithm: str, *, issuer: str, required: tuple[str, ...]) -> dict[str, Any]:
    """The verified claims of ``token``, or ``TokenError``. ``algorithm`` is the only one accepted."""
    signing_input, _, crypto_segment = token.rpartition(".")
    header_segment, dot, payload_segment = signing_input.partition(".")
    if not dot:
        raise TokenError("malformed", "malformed token")
    header = _json_object(_b64decode(header_segment))
    detached = header.get("b64", True) is False
    if detached and payload_segment:
        raise TokenError("malformed", "malformed token")
    payload_bytes = b"" if detached else _b64decode(payload_segment)
    signature = _b64decode(crypto_segment)
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("invalid", "token is invalid")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or any(ext != "b64" or ext not in header for ext in crit):
            raise TokenError("invalid", "token is invalid")
    if detached:  # a detached payload (RFC 7797): never one of ours
        if not isinstance(header.get("crit"), list) or "b64" not in header["crit"]:
            raise TokenError("invalid", "token is invalid")
        raise TokenError("malformed", "malformed token")
    if "alg" not in header:
        raise TokenError("algorithm", "token algorithm is not specified")
    if header["alg"] != algorithm:
        raise TokenError("algorithm", "token algorithm is not accepted")
    expected = _sign(signing_input.encode(), key, algorithm)
    if not hmac.compare_digest(expected, signature):
        raise TokenError("signature", "token signature is invalid")
    claims = _json_object(payload_bytes)
    for claim in required:
        if claims.get(claim) is None:
            raise TokenError("missing_claim", "token lacks a required claim", claim)
    if "iss" not in claims:
        raise TokenError("missing_claim", "token lacks a required claim", "iss")
    if not isinstance(claims["iss"], str) or claims["iss"] != issuer:
        raise TokenError("issuer", "token issuer is not accepted")
    if claims.get("aud"):  # no audience is expected
        raise TokenError("audience", "token audience is not accepted")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise TokenError("invalid", "token is invalid")
    return claims


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise TokenError("malformed", "malformed token") from None
    if not isinstance(value, dict):
        raise TokenError("malformed", "malformed token")
    return value
