"""JWT secret and key loading: weak secrets refused, the generated secret kept 0600 and reused."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airisd.auth.secrets import (
    PLACEHOLDER_SECRET,
    SECRET_FILE_NAME,
    check_secret,
    load_jwt_keys,
    load_jwt_secret,
)
from airisd.errors import ConfigError

GOOD = "k7Vq2xY9pL4mN8rT1wZ5bC3dF6gH0jQsAeUiOo"  # 38 random-looking characters


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "value",
    [
        PLACEHOLDER_SECRET,
        f"  {PLACEHOLDER_SECRET}\n",
        PLACEHOLDER_SECRET.upper(),
        PLACEHOLDER_SECRET + "-2",
    ],
)
def test_placeholder_secret_is_refused_with_advice(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_jwt_secret(value, tmp_path)
    message = str(info.value)
    assert "placeholder" in message
    assert "secrets.token_urlsafe(48)" in message  # says what to do
    assert info.value.details == {"key": "JWT_SECRET"}
    assert not (tmp_path / SECRET_FILE_NAME).exists()


def test_short_secret_is_refused_and_32_bytes_accepted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="31 bytes, too short") as info:
        load_jwt_secret(GOOD[:31], tmp_path)
    assert GOOD[:31] not in str(info.value)  # never echoes the secret
    assert load_jwt_secret(GOOD[:32], tmp_path) == GOOD[:32].encode()


def test_multibyte_secret_counts_bytes(tmp_path: Path) -> None:
    secret = "ключ-секрет-джей" + "ä"  # 17 characters, 32 bytes in UTF-8
    assert len(secret.encode()) == 32
    assert load_jwt_secret(secret, tmp_path) == secret.encode()


def test_repetitive_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repetitive"):
        load_jwt_secret("ab" * 32, tmp_path)


def test_pem_key_as_hmac_secret_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match="PEM or SSH key"):
        load_jwt_secret(pem.decode(), tmp_path)


def test_unset_secret_is_generated_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # does not exist yet
    first = load_jwt_secret(None, data_dir)
    path = data_dir / SECRET_FILE_NAME
    assert path.is_file()
    assert _mode(path) == 0o600
    assert len(first) >= 64
    check_secret(first)  # the generated secret passes its own checks
    assert load_jwt_secret(None, data_dir) == first  # a restart reuses it
    assert load_jwt_secret("", data_dir) == first  # JWT_SECRET= counts as unset
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE_NAME]  # no temporary files left


def test_generated_secret_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_jwt_secret(None, tmp_path)
    finally:
        os.umask(old)
    assert _mode(tmp_path / SECRET_FILE_NAME) == 0o600


def test_distinct_data_dirs_get_distinct_secrets(tmp_path: Path) -> None:
    assert load_jwt_secret(None, tmp_path / "a") != load_jwt_secret(None, tmp_path / "b")


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(load_jwt_secret(None, tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE_NAME]


def test_loose_mode_on_secret_file_is_refused(tmp_path: Path) -> None:
    load_jwt_secret(None, tmp_path)
    path = tmp_path / SECRET_FILE_NAME
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_jwt_secret(None, tmp_path)


def test_corrupt_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    path.write_bytes(b"short\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="too short"):
        load_jwt_secret(None, tmp_path)


def test_explicit_secret_does_not_touch_the_data_dir(tmp_path: Path) -> None:
    assert load_jwt_secret(GOOD, tmp_path) == GOOD.encode()
    assert list(tmp_path.iterdir()) == []


# --- key files -----------------------------------------------------------------------------------


def _write_pem(path: Path, key: object, *, mode: int = 0o600, password: bytes | None = None) -> Path:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.write_bytes(pem)
    path.chmod(mode)
    return path


def _write_public(path: Path, key: object) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_keys_load_with_matching_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    private = _write_pem(tmp_path / "jwt.key", rsa_key)
    public = _write_public(tmp_path / "jwt.pub", rsa_key)
    keys = load_jwt_keys(
        data_dir=tmp_path, algorithm="RS256", private_key_file=private, public_key_file=public
    )
    assert keys.algorithm == "RS256"
    assert "PRIVATE" not in repr(keys) and "RSA" not in repr(keys)
    assert not (tmp_path / SECRET_FILE_NAME).exists()  # no HMAC secret generated for RS256


def test_mismatched_public_key_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = _write_pem(tmp_path / "jwt.key", rsa_key)
    public = _write_public(tmp_path / "other.pub", other)
    with pytest.raises(ConfigError, match="does not belong"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=private, public_key_file=public)


def test_key_of_the_wrong_family_or_curve_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = _write_pem(tmp_path / "ec.key", ec.generate_private_key(ec.SECP256R1()))
    p384 = _write_pem(tmp_path / "p384.key", ec.generate_private_key(ec.SECP384R1()))
    rsa_file = _write_pem(tmp_path / "rsa.key", rsa_key)
    with pytest.raises(ConfigError, match="not an RSA key"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=ec_key)
    with pytest.raises(ConfigError, match="not an EC key"):
        load_jwt_keys(data_dir=tmp_path, algorithm="ES256", private_key_file=rsa_file)
    with pytest.raises(ConfigError, match="needs secp256r1"):
        load_jwt_keys(data_dir=tmp_path, algorithm="ES256", private_key_file=p384)
    assert load_jwt_keys(data_dir=tmp_path, algorithm="ES384", private_key_file=p384).algorithm == "ES384"


def test_small_rsa_key_is_refused(tmp_path: Path) -> None:
    small = _write_pem(tmp_path / "small.key", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ConfigError, match="1024-bit"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=small)


def test_world_readable_or_encrypted_or_garbage_private_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    loose = _write_pem(tmp_path / "loose.key", rsa_key, mode=0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=loose)
    locked = _write_pem(tmp_path / "locked.key", rsa_key, password=b"pass-phrase")
    with pytest.raises(ConfigError, match="encrypted"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=locked)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="not a PEM private key"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=garbage)
    with pytest.raises(ConfigError, match="cannot read"):
        load_jwt_keys(data_dir=tmp_path, algorithm="RS256", private_key_file=tmp_path / "missing.key")


def test_algorithm_settings_that_do_not_fit_are_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    private = _write_pem(tmp_path / "jwt.key", rsa_key)
    with pytest.raises(ConfigError, match="jwt_private_key_file is set but jwt_algorithm is HS256"):
        load_jwt_keys(data_dir=tmp_path, algorithm="HS256", secret=GOOD, private_key_file=private)
    with pytest.raises(ConfigError, match="needs jwt_private_key_file"):
        load_jwt_keys(data_dir=tmp_path, algorithm="ES256")
    with pytest.raises(ConfigError, match="not supported") as info:
        load_jwt_keys(data_dir=tmp_path, algorithm="none")
    assert info.value.details["key"] == "jwt_algorithm"
