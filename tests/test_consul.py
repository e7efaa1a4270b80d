"""Consul registration against a real Consul agent (-dev, loopback, free ports): every role
registers as <role>-service with a passing HTTP check on /health and is gone after SIGTERM."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airisd.consul import ConsulConfig, Registration, parse_consul_config
from airisd.errors import ConfigError
from tests.e2e_helpers import ROOT, AirisProcess, free_port

SERVICES = {"metrics-service", "log-service", "trace-service", "alert-service"}


def test_consul_config_is_off_by_default_and_rejects_typos() -> None:
    assert parse_consul_config({}, source="f").enabled is False
    with pytest.raises(ConfigError, match="hots"):
        parse_consul_config({"hots": "x"}, source="f")
    with pytest.raises(ConfigError, match="scheme"):
        parse_consul_config({"scheme": "ftp"}, source="f")


def test_registration_payload_has_the_seed_name_and_an_http_check() -> None:
    body = Registration("metrics", "127.0.0.1", 8001).payload(ConsulConfig(check_interval_secs=2))
    assert body["Name"] == "metrics-service" and body["Port"] == 8001 and body["Address"] == "127.0.0.1"
    assert body["Check"]["HTTP"] == "http://127.0.0.1:8001/health" and body["Check"]["Interval"] == "2s"
    wildcard = Registration("log", "0.0.0.0", 8002).payload(ConsulConfig(address="10.0.0.5"))
    assert wildcard["Address"] == "10.0.0.5" and wildcard["ID"] == "log-service-10.0.0.5-8002"


def _consul_bin() -> str:
    local = ROOT / ".cache" / "services" / "consul" / "usr" / "bin" / "consul"
    found = str(local) if local.exists() else shutil.which("consul")
    if found is None:
        if os.environ.get("AIRISD_REQUIRE_SERVICES") == "1":
            pytest.fail("consul is not installed; run scripts/test-services.sh install")
        pytest.skip("consul not installed (scripts/test-services.sh install)")
    return found


@pytest.fixture
def consul(tmp_path: Path) -> Iterator[str]:
    http = free_port()
    args = [_consul_bin(), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-http-port", str(http), "-dns-port", str(free_port()), "-serf-lan-port", str(free_port()),
            "-serf-wan-port", str(free_port()), "-server-port", str(free_port()),
            "-grpc-port", str(free_port()),
            "-data-dir", str(tmp_path / "consul")]
    log = (tmp_path / "consul.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "consul.log").read_text()
            try:
                if httpx.get(f"{url}/v1/status/leader", timeout=1).json():
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "consul did not elect itself leader"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.services
def test_roles_register_pass_their_checks_and_deregister(consul: str, tmp_path: Path) -> None:
    port = consul.rsplit(":", 1)[1]
    airis = AirisProcess(tmp_path / "data", role="all", extra_args=[
        "--set", "consul.enabled=true", "--set", 'consul.host="127.0.0.1"', "--set", f"consul.port={port}",
        "--set", "consul.check_interval_secs=0.5"])
    airis.start()
    try:
        def names() -> set[str]:
            return {s["Service"] for s in httpx.get(f"{consul}/v1/agent/services").json().values()}

        _wait(lambda: names() == SERVICES, "all four roles registered")
        services = httpx.get(f"{consul}/v1/agent/services").json()
        metrics = next(s for s in services.values() if s["Service"] == "metrics-service")
        assert metrics["Port"] == airis.ports["metrics"] and "airisd" in metrics["Tags"]

        def passing() -> bool:
            return all(httpx.get(f"{consul}/v1/health/service/{n}", params={"passing": "1"}).json()
                       for n in SERVICES)

        _wait(passing, "every /health check passing")
    finally:
        assert airis.terminate() == 0
        airis.stop()
    assert httpx.get(f"{consul}/v1/agent/services").json() == {}
    assert "deregistered from consul" in airis.log()


def test_host_and_port_default_to_the_seed_environment() -> None:
    cfg = parse_consul_config({}, source="f", environ={"CONSUL_HOST": "consul", "CONSUL_PORT": "8501"})
    assert (cfg.host, cfg.port) == ("consul", 8501)
    cfg = parse_consul_config({"host": "10.0.0.1"}, source="f", environ={"CONSUL_HOST": "consul"})
    assert (cfg.host, cfg.port) == ("10.0.0.1", 8500)
    with pytest.raises(ConfigError, match=r"\[consul\]"):
        parse_consul_config({}, source="f", environ={"CONSUL_PORT": "eighty"})


@pytest.mark.e2e
@pytest.mark.services
def test_alert_role_finds_the_metrics_role_through_consul(consul: str, tmp_path: Path) -> None:
    """--role alert with no metrics_url: it asks Consul's health API for a passing metrics-service."""
    from tests.e2e_helpers import airisd_bin
    from tests.test_e2e_alerts import Receiver, wait_for

    port = consul.rsplit(":", 1)[1]
    consul_args = ["--set", "consul.enabled=true", "--set", 'consul.host="127.0.0.1"',
                   "--set", f"consul.port={port}", "--set", "consul.check_interval_secs=0.5"]
    data = AirisProcess(tmp_path / "data", role="metrics,log", extra_args=consul_args).start()
    alert = None
    receiver = Receiver()
    try:
        key = subprocess.run(
            [airisd_bin(), "token", "create", "--role", "reader", "--name", "alert-role",
             "--config", str(ROOT / "etc" / "airisd.toml"), "--data-dir", str(data.data_dir)],
            capture_output=True, text=True, timeout=60, check=True).stdout.strip().split()[-1]
        _wait(lambda: httpx.get(f"{consul}/v1/health/service/metrics-service", params={"passing": "1"}).json(),
              "metrics-service passing in Consul")
        alert = AirisProcess(tmp_path / "alert", role="alert",
                             extra_args=[*consul_args, "--set", "alerting.evaluation_interval_secs=1"],
                             env={"AIRISD_ALERT_API_KEY": key}).start()
        c = alert.client("alert")
        assert c.post("/channels", json={"name": "hook", "type": "webhook",
                                         "config": {"url": receiver.url + "/consul"}}).status_code == 201
        assert c.post("/rules", json={"name": "Found Through Consul", "channels": ["hook"], "conditions": {
            "metric": "disk.usage", "operator": "gt", "threshold": 90, "duration": "0s"}}).status_code == 201
        assert data.client("metrics").post("/metrics", json={"name": "disk.usage", "value": 99}).status_code == 201
        wait_for("the notification of a rule evaluated through Consul",
                 lambda: any(b["commonLabels"]["alertname"] == "Found Through Consul"
                             for b in receiver.at("/consul")))
    finally:
        if alert is not None:
            alert.stop()
        data.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
