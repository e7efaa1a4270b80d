"""Delivery helpers shared by the channel plugins and the dispatcher.

``http_request`` turns every HTTP outcome into our two failure kinds: connection errors, timeouts,
429 and 5xx are TransientError (worth retrying); other 4xx, 3xx and bad URLs are PermanentError.
Messages name the host, never the full URL (Slack webhook paths are secrets).

``send_with_retry`` retries TransientError (and unexpected exceptions, per the plugin contract)
with full-jitter exponential backoff on the injected clock.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from airisd import __version__
from airisd.errors import PermanentError, TransientError, ValidationError
from airisd.plugin import Clock

USER_AGENT = f"airisd/{__version__}"


class SendResult(msgspec.Struct, kw_only=True):
    ok: bool
    attempts: int
    error: str = ""
    permanent: bool = False


async def http_request(
    client: httpx.AsyncClient, method: str, url: str, *, what: str, **kwargs: Any
) -> httpx.Response:
    host = _host(url)
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    try:
        resp = await client.request(method, url, headers=headers, **kwargs)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise PermanentError(f"{what}: bad URL for {host}: {exc}") from None
    except httpx.TimeoutException:
        raise TransientError(f"{what}: {host} timed out") from None
    except httpx.TransportError as exc:
        raise TransientError(f"{what}: {host}: {type(exc).__name__}: {exc}") from None
    code = resp.status_code
    if code < 300:
        return resp
    snippet = resp.text[:200].replace("\n", " ")
    message = f"{what}: {host} answered HTTP {code}: {snippet}".rstrip(": ")
    if code == 429 or code >= 500:
        raise TransientError(message, details={"status": code})
    raise PermanentError(message, details={"status": code})


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2] or "?"
    except ValueError:
        return "?"


async def send_with_retry(
    send: Callable[[], Awaitable[None]],
    *,
    attempts: int,
    initial_secs: float,
    max_secs: float,
    clock: Clock,
    rng: random.Random | None = None,
) -> SendResult:
    """Call ``send`` until it succeeds, raises PermanentError, or ``attempts`` are used up."""
    rng = rng or random.Random()
    error = ""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            await send()
            return SendResult(ok=True, attempts=attempt)
        except (PermanentError, ValidationError) as exc:
            return SendResult(ok=False, attempts=attempt, error=str(exc), permanent=True)
        except TransientError as exc:
            error = str(exc)
        except Exception as exc:  # the plugin contract: anything else counts as transient
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            await clock.sleep(rng.uniform(0, min(max_secs, initial_secs * 2 ** (attempt - 1))))
    return SendResult(ok=False, attempts=max(1, attempts), error=error)
