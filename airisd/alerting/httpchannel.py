"""The part every HTTP-based channel shares: one pooled httpx client per channel instance.

The client is made on first use (``POST /channels/{id}/test`` may send without start()) and closed
by shutdown(), which is safe without start() and safe twice.
"""

from __future__ import annotations

from typing import Any

import httpx

from airisd.alerting.delivery import http_request
from airisd.alerting.rules import invalid_option
from airisd.plugin import AlertChannel


class HttpChannel(AlertChannel):
    timeout_secs: float = 10.0

    _client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_secs, follow_redirects=False)
        return self._client

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await http_request(self.client(), method, url, what=self.name, **kwargs)

    async def start(self) -> None:
        self.client()

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def check_url(option: str, url: str, *, required: bool = True) -> None:
    """An http(s) URL, or empty when not ``required``."""
    if not url:
        if required:
            raise invalid_option(option, "is required")
        return
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise invalid_option(option, "must be an http:// or https:// URL")


def check_headers(headers: dict[str, str]) -> None:
    for key, value in headers.items():
        if not key or any(c in key for c in " :\r\n") or any(c in value for c in "\r\n"):
            raise invalid_option(f"headers.{key}"[:120], "is not a valid HTTP header")
