"""Two ``airisd run --role alert`` replicas on one redis-server and one webhook receiver: what is
configured through one is used by the other, and each notification is sent exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e_helpers import AirisProcess
from tests.servers import ServerProcess, redis_server
from tests.test_e2e_alerts import Receiver, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.services]


def created(resp: httpx.Response) -> Any:
    assert resp.status_code == 201, resp.text
    return resp.json()["data"]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[AirisProcess, AirisProcess, ServerProcess]]:
    srv = redis_server(tmp_path / "redis")
    srv.start()
    procs: list[AirisProcess] = []
    try:
        for name in ("a", "b"):
            procs.append(AirisProcess(tmp_path / name, role="alert", extra_args=[
                "--set", 'alerting.store="redis"',
                "--set", f'alerting.redis_url="redis://127.0.0.1:{srv.port}/0"',
                "--set", "alerting.evaluation_interval_secs=0.5",
                "--set", 'alerting.default_channels=["hook"]',
            ]).start())
        yield procs[0], procs[1], srv
    finally:
        for p in procs:
            p.stop()
        srv.stop(kill=True)


def test_replicas_share_config_and_notify_once(
    replicas: tuple[AirisProcess, AirisProcess, ServerProcess]
) -> None:
    a, b, _ = replicas
    receiver = Receiver()
    try:
        ca, cb = a.client("alert"), b.client("alert")
        hook = created(ca.post("/channels", json={"name": "hook", "type": "webhook",
                                                  "config": {"url": receiver.url + "/hook"}}))
        rule = created(ca.post("/rules", json={
            "name": "High CPU", "channels": ["hook"],
            "conditions": {"metric": "cpu.usage", "operator": "gt", "threshold": 80, "duration": "1m"}}))
        assert [r["id"] for r in cb.get("/rules").json()["data"]] == [rule["id"]]  # made on A, listed by B
        assert [c["id"] for c in cb.get("/channels").json()["data"]] == [hook["id"]]
        assert cb.patch(f"/rules/{rule['id']}", json={"enabled": False}).status_code == 200
        assert ca.get(f"/rules/{rule['id']}").json()["data"]["enabled"] is False  # changed on B, seen by A

        alert = {"labels": {"alertname": "DiskFull", "instance": "db-1"}, "annotations": {"summary": "95%"}}
        assert ca.post("/api/v2/alerts", json=[alert]).status_code == 200
        wait_for("the firing webhook", lambda: receiver.at("/hook"))
        time.sleep(3)  # six more rounds on each replica
        assert [p["status"] for p in receiver.at("/hook")] == ["firing"]
        assert [x["labels"]["instance"] for x in cb.get("/alerts").json()["data"]] == ["db-1"]

        resolved = {**alert, "endsAt": "2020-01-01T00:00:00Z"}
        assert cb.post("/api/v2/alerts", json=[resolved]).status_code == 200  # resolved through B
        wait_for("the resolved webhook", lambda: len(receiver.at("/hook")) > 1)
        time.sleep(3)
        assert [p["status"] for p in receiver.at("/hook")] == ["firing", "resolved"]
        history = ca.get("/alerts/history", params={"kind": "notification"}).json()["data"]["items"]
        assert sorted(h["status"] for h in history) == ["firing", "resolved"]
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
