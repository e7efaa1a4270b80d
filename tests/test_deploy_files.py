"""docker-compose.yml and deploy/nginx.conf are not run here (no Docker, no nginx): check that they
parse and say what the seed's deployment says, so they do not rot silently."""

from __future__ import annotations

import re

import yaml

from tests.e2e_helpers import ROOT

ROLE_PORTS = {"metrics": 8001, "log": 8002, "trace": 8003, "alert": 8004}


def test_compose_has_the_seed_services_and_the_four_roles() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"consul", "redis", "clickhouse", "elasticsearch", "kafka", "jaeger"} <= set(services)
    for role, port in ROLE_PORTS.items():
        svc = services[f"{role}-service"]
        assert svc["command"][:2] == ["--role", role]
        assert f'listeners.{role}.address="0.0.0.0:{port}"' in svc["command"]
        assert f"{port}:{port}" in svc["ports"]
        assert svc["environment"]["CONSUL_HOST"] == "consul" and svc["environment"]["PORT"] == str(port)
        assert "airisd-data:/var/lib/airisd" in svc["volumes"]  # the alert role reads the shared stores
    assert set(doc["volumes"]) >= {"airisd-data", "clickhouse-data", "elasticsearch-data", "redis-data"}


def test_nginx_conf_balances_braces_and_has_upstreams_and_tls() -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    depth = 0
    for ch in code:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    upstreams = dict(re.findall(r"upstream (\w+) \{([^}]*)\}", code))
    assert set(upstreams) == {"metrics_backend", "log_backend", "trace_backend", "alert_backend"}
    assert len(re.findall(r"server 127\.0\.0\.1:\d+", upstreams["metrics_backend"])) == 3
    assert "listen 443 ssl;" in code and "ssl_certificate " in code and "ssl_certificate_key " in code
    for stmt in (s.strip() for s in re.split(r"[{};]", code)):
        assert not stmt or re.match(r"^[a-z_0-9]+(\s|$)|^location|^upstream|^server", stmt), stmt
