"""Password hashing with scrypt (stdlib ``hashlib.scrypt``), parameters kept in the hash string.

Format: ``$scrypt$ln=14,r=8,p=5$<salt>$<hash>`` with unpadded standard base64, so a stored hash says
how to check it and stronger parameters can be adopted later without invalidating old hashes. The
default (N=2^14, r=8, p=5: 16 MiB, ~0.3 s here) is one of OWASP's scrypt settings; memory per hash
is what bounds concurrent logins, so the cost goes into p rather than N.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from airisd.errors import ValidationError

DEFAULT_LOG2_N: Final = 14
DEFAULT_R: Final = 8
DEFAULT_P: Final = 5
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
MAX_MEMORY_BYTES: Final = 256 * 1024 * 1024
MAX_P: Final = 64
MIN_PASSWORD_CHARS: Final = 8
MAX_PASSWORD_CHARS: Final = 1024

_HASH_RE: Final = re.compile(
    r"^\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,88})\$(?P<hash>[A-Za-z0-9+/]{22,88})$"
)


@dataclass(frozen=True, slots=True)
class ScryptParams:
    log2_n: int = DEFAULT_LOG2_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def validate(self) -> ScryptParams:
        """Refuse parameters that are invalid or would let a config file exhaust memory or CPU."""
        if not 1 <= self.log2_n <= 24 or not 1 <= self.r <= 64 or not 1 <= self.p <= MAX_P:
            raise ValueError("scrypt parameters out of range (ln 1-24, r 1-64, p 1-64)")
        if self.memory_bytes > MAX_MEMORY_BYTES:
            raise ValueError(f"scrypt parameters need {self.memory_bytes >> 20} MiB, above the 256 MiB limit")
        return self

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * (1 << self.log2_n)


DEFAULT_PARAMS: Final = ScryptParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, params: ScryptParams, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=1 << params.log2_n,
        r=params.r,
        p=params.p,
        maxmem=2 * params.memory_bytes + (1 << 20),
        dklen=dklen,
    )


def hash_password(password: str, *, params: ScryptParams = DEFAULT_PARAMS) -> str:
    """A salted scrypt hash of ``password`` for the user store or ``[[auth.users]] password_hash``."""
    if not isinstance(password, str):
        raise TypeError("password must be a string")
    params.validate()
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, params, HASH_BYTES)
    return f"$scrypt$ln={params.log2_n},r={params.r},p={params.p}${_b64(salt)}${_b64(digest)}"


def parse_hash(encoded: str) -> tuple[ScryptParams, bytes, bytes]:
    """(params, salt, digest) of a stored hash; ValueError (without echoing it) when it is not one."""
    match = _HASH_RE.match(encoded) if isinstance(encoded, str) else None
    if match is None:
        raise ValueError("not an airisd scrypt hash ($scrypt$ln=..,r=..,p=..$salt$hash)")
    params = ScryptParams(int(match["ln"]), int(match["r"]), int(match["p"])).validate()
    try:
        salt, digest = _unb64(match["salt"]), _unb64(match["hash"])
    except (binascii.Error, ValueError):
        raise ValueError("scrypt hash has invalid base64") from None
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("scrypt hash has a salt or digest that is too short")
    return params, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; the comparison is constant-time."""
    params, salt, digest = parse_hash(encoded)
    candidate = _scrypt(password, salt, params, len(digest))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(encoded: str, params: ScryptParams) -> bool:
    try:
        return parse_hash(encoded)[0] != params
    except ValueError:
        return True


def check_password_policy(password: object, *, field: str = "password") -> str:
    """The password if acceptable for a new or changed account, else ValidationError naming ``field``."""
    if not isinstance(password, str):
        raise ValidationError(f"{field} must be a string", details={"field": field})
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(
            f"{field} must be at least {MIN_PASSWORD_CHARS} characters", details={"field": field}
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(
            f"{field} must be at most {MAX_PASSWORD_CHARS} characters", details={"field": field}
        )
    if "\x00" in password:
        raise ValidationError(f"{field} must not contain NUL characters", details={"field": field})
    return password
