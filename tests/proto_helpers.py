"""In-process harness for the protocol inputs: one plugin's routes behind the real ASGI wrapper,
with an emit that records batches (or refuses them, to test backpressure answers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from airisd.errors import Backpressure
from airisd.http.app import HttpContext, build_app
from airisd.model import Batch
from airisd.plugin import Plugin
from airisd.selfmetrics import Registry
from tests.conftest import FakeClock, make_ctx


class SyncClient:
    """A synchronous client over an ASGI app (starlette's TestClient warns about httpx): each call
    runs one request on a fresh event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://airisd") as client:
                return await client.request(method, url, **kw)

        return anyio.run(go)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def head(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("HEAD", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)


class Sink:
    """Collects emitted batches; ``refuse`` makes emit raise Backpressure as a full queue does."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.refuse = False

    async def __call__(self, batch: Batch) -> None:
        if self.refuse:
            raise Backpressure("output queue full (test)", retry_after_secs=2)
        self.batches.append(batch)

    @property
    def items(self) -> list[Any]:
        return [item for b in self.batches for item in b.items]


@contextmanager
def plugin_client(
    cls: type[Plugin],
    tmp_path: Path,
    *,
    role: str,
    config: dict[str, Any] | None = None,
    max_body: int = 1 << 20,
) -> Iterator[tuple[SyncClient, Sink, Plugin]]:
    import msgspec

    sink = Sink()
    cfg = msgspec.convert(config or {}, cls.Config, strict=False)
    cfg.validate()
    ctx = make_ctx(
        tmp_path, clock=FakeClock(), emit=sink, settings={"max_body_bytes": max_body, "hostname": "test-host"}
    )
    plugin = cls(cfg, ctx)
    app = build_app(list(plugin.routes()), HttpContext(role=role, metrics=Registry()))  # type: ignore[attr-defined]
    yield SyncClient(app), sink, plugin
