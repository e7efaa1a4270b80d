"""Hot reload over a socket: SIGHUP and POST /admin/reload re-read the config file; a bad file is
refused with the reason logged and the running config kept; what needs a restart is reported."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airisd.config import build_config
from airisd.reload import diff
from tests.e2e_helpers import ROOT, AirisProcess

pytestmark = pytest.mark.e2e

LABELS = '\n[[processors.labels]]\n  add = { environment = "reloaded" }\n  signals = ["metrics"]\n'


@pytest.fixture
def airis(tmp_path: Path) -> Iterator[AirisProcess]:
    config = tmp_path / "airisd.toml"
    config.write_text((ROOT / "etc" / "airisd.toml").read_text())
    proc = AirisProcess(tmp_path / "data", role="metrics", config=config)
    proc.start()
    yield proc
    proc.stop()


def _series_labels(airis: AirisProcess, name: str) -> list[dict[str, str]]:
    resp = airis.client("metrics").get("/metrics/query", params={"name": name})
    assert resp.status_code == 200, resp.text
    return [s["labels"] for s in resp.json()["data"]["series"]]


def _wait_log(airis: AirisProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while airis.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{airis.log()}"
        time.sleep(0.05)


def test_admin_reload_applies_processors_and_reports_restart_keys(airis: AirisProcess) -> None:
    assert airis.config is not None
    client = airis.client("metrics")
    same = client.post("/admin/reload")
    assert same.status_code == 200, same.text
    assert same.json()["data"]["applied"] == [] and same.json()["data"]["restart_required"] == []

    text = airis.config.read_text().replace('# log_level = "info"', 'log_level = "debug"')
    airis.config.write_text(text + LABELS)
    resp = client.post("/admin/reload")
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["applied"] == ["agent.log_level", "processors"]
    assert client.post("/metrics", json={"name": "after.reload", "value": 1}).status_code == 201
    assert _series_labels(airis, "after.reload") == [{"environment": "reloaded"}]

    text = airis.config.read_text().replace("# max_page_size = 1000", "max_page_size = 10")
    airis.config.write_text(text)
    resp = client.post("/admin/reload")
    assert resp.json()["data"]["restart_required"] == ["http.max_page_size"]
    _wait_log(airis, "config changes that need a restart were not applied")


def test_an_invalid_config_is_refused_and_the_running_one_kept(airis: AirisProcess) -> None:
    assert airis.config is not None and airis.proc is not None
    client = airis.client("metrics")
    good = airis.config.read_text()
    airis.config.write_text(good + LABELS)
    assert client.post("/admin/reload").status_code == 200
    airis.config.write_text(good + LABELS + "\n[agent2]\n  oops = 1\n")
    airis.proc.send_signal(signal.SIGHUP)
    _wait_log(airis, "config reload refused")
    assert "agent2" in airis.log().split("config reload refused", 1)[1].splitlines()[0]
    bad = client.post("/admin/reload")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "CONFIG_INVALID"
    assert "agent2" in bad.json()["error"]["message"]
    airis.config.write_text(good + '\n[[processors.labels]]\n  add = "not a table"\n')
    assert client.post("/admin/reload").status_code == 422
    # Still running with the last good config, processors included.
    assert client.post("/metrics", json={"name": "kept", "value": 2}).status_code == 201
    assert _series_labels(airis, "kept") == [{"environment": "reloaded"}]
    # A good file again: SIGHUP applies it.
    airis.config.write_text(good)
    airis.proc.send_signal(signal.SIGHUP)
    _wait_log(airis, "config reloaded", count=2)
    assert client.post("/metrics", json={"name": "plain", "value": 3}).status_code == 201
    assert _series_labels(airis, "plain") == [{}]


def test_reload_needs_an_admin(airis: AirisProcess) -> None:
    import httpx

    assert httpx.post(airis.url("metrics") + "/admin/reload").status_code == 401


def test_diff_sorts_live_and_restart_keys() -> None:
    old = build_config({}, source="a", environ={})
    new = build_config({"agent": {"log_format": "json", "data_dir": "/x"}, "listeners": {"metrics": {
        "address": "127.0.0.1:9"}}, "http": {"retry_after_secs": 5}}, source="b", environ={})
    live, restart = diff(old, new)
    assert live == ["agent.log_format", "http.retry_after_secs"]
    assert restart == ["agent.data_dir", "listeners"]
