"""Where the JWT signing key comes from, and the refusal of weak ones.

HS256 (the default) signs with ``JWT_SECRET``. When it is unset a random secret is generated once and
kept in ``<data_dir>/jwt.secret`` (mode 0600) so tokens survive a restart. The seed's sample value and
anything under 32 bytes are refused at start: a guessable HMAC secret lets anyone mint admin tokens.
RS256/ES256 (and their 384/512 variants) sign with a PEM private key file instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from airisd.errors import ConfigError

PLACEHOLDER_SECRET: Final = "your-super-secret-jwt-key-change-this-in-production"
MIN_SECRET_BYTES: Final = 32
MIN_DISTINCT_BYTES: Final = 8
SECRET_FILE_NAME: Final = "jwt.secret"
MIN_RSA_BITS: Final = 2048
GENERATE_HINT: Final = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"

HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
# algorithm -> (key family, EC curve name or None)
ASYMMETRIC_ALGORITHMS: Final[dict[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "ES256": ("EC", "secp256r1"),
    "ES384": ("EC", "secp384r1"),
    "ES512": ("EC", "secp521r1"),
}
ALGORITHMS: Final = (*HMAC_ALGORITHMS, *ASYMMETRIC_ALGORITHMS)


@dataclass(frozen=True, slots=True)
class JwtKeys:
    """The pinned algorithm with its keys: bytes for HS*, cryptography key objects otherwise."""

    algorithm: str
    signing_key: Any
    verification_key: Any

    def __repr__(self) -> str:  # never print key material
        return f"JwtKeys(algorithm={self.algorithm!r})"


def check_secret(secret: bytes, *, source: str = "JWT_SECRET") -> bytes:
    """Return ``secret`` if it is fit to sign HS* tokens, else raise ConfigError naming ``source``."""
    hint = (
        f"set {source} to a random value of at least {MIN_SECRET_BYTES} bytes, "
        f"e.g. the output of {GENERATE_HINT}"
    )
    details = {"key": source}
    if PLACEHOLDER_SECRET.encode() in secret.strip().lower():
        raise ConfigError(
            f"{source} is the placeholder from the sample .env; anyone can forge tokens with it: {hint}, "
            f"or unset it to have a secret generated in the data directory",
            details=details,
        )
    if secret.lstrip().startswith((b"-----BEGIN", b"ssh-", b"ecdsa-sha2-")):
        raise ConfigError(
            f"{source} holds a PEM or SSH key; an HMAC secret must be random bytes (HS/RS confusion), "
            f"or set jwt_algorithm to RS256/ES256 and use jwt_private_key_file",
            details=details,
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{source} is {len(secret)} bytes, too short: {hint}", details=details)
    if len(set(secret)) < MIN_DISTINCT_BYTES:
        raise ConfigError(f"{source} is too repetitive to be a secret: {hint}", details=details)
    return secret


def load_jwt_secret(env_value: str | None, data_dir: Path, *, source: str = "JWT_SECRET") -> bytes:
    """The HS* secret: ``env_value`` if set (checked), else the one kept in ``<data_dir>/jwt.secret``.

    An empty string counts as unset (``JWT_SECRET=`` in a .env file). The file is created on first use
    with mode 0600, atomically, so two daemons starting together agree on one secret.
    """
    if env_value is not None and env_value != "":
        return check_secret(env_value.encode("utf-8"), source=source)
    path = Path(data_dir) / SECRET_FILE_NAME
    if not path.exists():
        _create_secret_file(path)
    return _read_secret_file(path)


def load_jwt_keys(
    *,
    data_dir: Path,
    algorithm: str = "HS256",
    secret: str | None = None,
    private_key_file: Path | str | None = None,
    public_key_file: Path | str | None = None,
) -> JwtKeys:
    """Build the keys for ``algorithm`` from the configuration (``jwt_algorithm``, ``JWT_SECRET``,
    ``jwt_private_key_file``, ``jwt_public_key_file``). The public key defaults to the private key's."""
    if algorithm in HMAC_ALGORITHMS:
        for name, value in (
            ("jwt_private_key_file", private_key_file),
            ("jwt_public_key_file", public_key_file),
        ):
            if value:
                raise ConfigError(
                    f"{name} is set but jwt_algorithm is {algorithm}, which signs with JWT_SECRET; "
                    f"set jwt_algorithm to RS256 or ES256 to use the key file",
                    details={"key": name},
                )
        key = load_jwt_secret(secret, data_dir)
        return JwtKeys(algorithm, key, key)
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise ConfigError(
            f"jwt_algorithm {algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}",
            details={"key": "jwt_algorithm", "value": algorithm},
        )
    if not private_key_file:
        raise ConfigError(
            f"jwt_algorithm {algorithm} needs jwt_private_key_file (a PEM private key)",
            details={"key": "jwt_private_key_file"},
        )
    private = _load_private_key(Path(private_key_file), algorithm)
    public = private.public_key()
    if public_key_file:
        given = _load_public_key(Path(public_key_file), algorithm)
        if _public_der(given) != _public_der(public):
            raise ConfigError(
                f"jwt_public_key_file {public_key_file} does not belong to "
                f"jwt_private_key_file {private_key_file}",
                details={"key": "jwt_public_key_file"},
            )
    return JwtKeys(algorithm, private, public)


# --- the generated secret file -------------------------------------------------------------------


def _create_secret_file(path: Path) -> None:
    """Write a fresh secret to a temporary file, then hard-link it into place: the name appears only
    with its full content, and an existing file (another process won the race) is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48).encode("ascii") + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # someone else created it first: theirs wins
    except OSError:
        # a filesystem without hard links: fall back to an exclusive create of the final name
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, value)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _read_secret_file(path: Path) -> bytes:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the JWT secret file {path}: {exc.strerror}", details={"file": str(path)}
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"the JWT secret file {path} is not a regular file", details={"file": str(path)})
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the JWT secret file {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}",
            details={"file": str(path)},
        )
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the JWT secret file {path}: {exc.strerror}", details={"file": str(path)}
        ) from None
    return check_secret(data, source=f"the JWT secret file {path}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- PEM key files -------------------------------------------------------------------------------


def _read_key_file(path: Path, key: str, *, private: bool) -> bytes:
    try:
        st = os.stat(path)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {key} {path}: {exc.strerror}", details={"key": key, "file": str(path)}
        ) from None
    if private and st.st_mode & 0o007:
        raise ConfigError(
            f"{key} {path} is readable by every user (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}",
            details={"key": key, "file": str(path)},
        )
    return data


def _check_key_type(key: Any, algorithm: str, name: str, path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    family, curve = ASYMMETRIC_ALGORITHMS[algorithm]
    details = {"key": name, "file": str(path)}
    if family == "RSA":
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            raise ConfigError(f"{name} {path} is not an RSA key, which {algorithm} needs", details=details)
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{name} {path} is a {key.key_size}-bit RSA key; use at least {MIN_RSA_BITS} bits",
                details=details,
            )
    else:
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            raise ConfigError(f"{name} {path} is not an EC key, which {algorithm} needs", details=details)
        if key.curve.name != curve:
            raise ConfigError(
                f"{name} {path} uses curve {key.curve.name}; {algorithm} needs {curve}", details=details
            )


def _load_private_key(path: Path, algorithm: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_key_file(path, "jwt_private_key_file", private=True)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"jwt_private_key_file {path} is encrypted; airisd needs an unencrypted PEM key (mode 0600)",
            details={"key": "jwt_private_key_file", "file": str(path)},
        ) from None
    except Exception:  # cryptography raises ValueError or UnsupportedAlgorithm; never echo key bytes
        raise ConfigError(
            f"jwt_private_key_file {path} is not a PEM private key",
            details={"key": "jwt_private_key_file", "file": str(path)},
        ) from None
    _check_key_type(key, algorithm, "jwt_private_key_file", path)
    return key


def _load_public_key(path: Path, algorithm: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read_key_file(path, "jwt_public_key_file", private=False)
    try:
        key = load_pem_public_key(data)
    except Exception:
        raise ConfigError(
            f"jwt_public_key_file {path} is not a PEM public key",
            details={"key": "jwt_public_key_file", "file": str(path)},
        ) from None
    _check_key_type(key, algorithm, "jwt_public_key_file", path)
    return key


def _public_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
