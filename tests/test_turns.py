"""Parsing turns (airisd.turns): one ingestion request parses at a time, in arrival order, and the
turn is given up when the batch is queued or the handler ends in any way, so that an invalid
request, a refused one or a cancelled one never keeps the others waiting."""

from __future__ import annotations

import anyio
import httpx
import pytest

from airisd.turns import give_up_turn, take_turn, turn_taken
from tests.proto_helpers import Sink


def test_turns_go_in_arrival_order_and_one_at_a_time() -> None:
    order: list[str] = []

    async def request(name: str, delay: float) -> None:
        await anyio.sleep(delay)
        await take_turn()
        await take_turn()  # a second take by the holder is a no-op, not a deadlock
        order.append(f"{name} in")
        await anyio.sleep(0.02)
        order.append(f"{name} out")
        give_up_turn()
        give_up_turn()  # and so is a second give-up

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i, name in enumerate("abc"):
                tg.start_soon(request, name, i * 0.001)
        assert not turn_taken()

    anyio.run(main)
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]


@pytest.mark.parametrize("body", [b'{"logs": [{"level": "INFO"}]}', b"{not json", b'{"logs": []}'])
def test_a_refused_batch_gives_the_turn_back(tmp_path, body: bytes) -> None:
    """Through the real ASGI wrapper and the logs input: a bad batch (400), then a good one, then a
    refused one (503), each within a deadline: a leaked turn would make the next one hang."""
    from airisd_plugins.inputs.http_logs import HttpLogsConfig, HttpLogsInput

    from airisd.http.app import HttpContext, build_app
    from airisd.selfmetrics import Registry
    from tests.conftest import make_ctx

    sink = Sink()
    ctx = make_ctx(tmp_path, emit=sink)
    plugin = HttpLogsInput(HttpLogsConfig(), ctx)
    app = build_app(plugin.routes(), HttpContext(role="log", metrics=Registry()))
    good = b'{"logs": [{"level": "INFO", "message": "ok"}]}'

    async def main() -> list[int]:
        statuses = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://airisd") as client:
            for payload, refuse in ((body, False), (good, False), (good, True), (good, False)):
                sink.refuse = refuse
                with anyio.fail_after(5):
                    r = await client.post("/logs/batch", content=payload,
                                          headers={"content-type": "application/json"})
                statuses.append(r.status_code)
                assert not turn_taken()
        return statuses

    assert anyio.run(main) == [400, 201, 503, 201]
    assert [len(b.items) for b in sink.batches] == [1, 1]
