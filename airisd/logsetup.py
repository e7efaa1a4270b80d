"""Structured logs: one line per event, logfmt (default) or JSON, to stderr.

Call sites pass fields with ``extra={"kv": {...}}``; secrets registered with ``add_secret`` are
masked in every line, whatever the call site did.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Never print this value; short values are ignored (they would mask ordinary words)."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def mask(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}) or {})
        if record.exc_info and record.exc_info[0] is not None:
            fields["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        if self.json:
            line = orjson.dumps(fields, default=str).decode()
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return mask(line)


def setup_logging(*, level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    root = logging.getLogger("airisd")
    root.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"airisd.{name}")
