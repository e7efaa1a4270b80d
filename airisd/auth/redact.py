"""Masking secrets in text bound for logs, health output and error messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

REDACTED: Final = "[REDACTED]"
MIN_SECRET_CHARS: Final = 4  # shorter values would mask ordinary words; passwords are >= 8 anyway

_PATTERNS: Final = (
    # Authorization: <anything> (header dumps, request logs)
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    # API keys keep their (non-secret) id so the log still says which key
    (re.compile(r"\bairisd_([0-9a-f]{16})_[A-Za-z0-9_-]+"), r"airisd_\1_" + REDACTED),
    # anything shaped like a JWT
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)


def redact(text: str, secrets: Iterable[str | bytes | None] = ()) -> str:
    """``text`` with each of ``secrets`` (and its URL-encoded form) replaced by ``[REDACTED]``, plus
    anything that looks like a bearer credential, an airisd API key or a JWT. Empty and very short
    (< 4 characters) secrets are skipped."""
    values: set[str] = set()
    for secret in secrets:
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if not secret or len(secret) < MIN_SECRET_CHARS:
            continue
        values.add(secret)
        values.add(quote(secret, safe=""))
    for value in sorted(values, key=len, reverse=True):  # longest first: overlapping secrets vanish whole
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
