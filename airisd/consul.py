"""Consul service registration, as the seed's services do it: each role registers with the local
Consul agent as ``metrics-service``, ``log-service``, ``trace-service`` or ``alert-service`` with an
HTTP check on its ``/health``, and deregisters when the daemon stops.

``[consul]`` (off by default)::

    [consul]
      enabled = true
      # host = "localhost"      # default: $CONSUL_HOST, else localhost
      # port = 8500             # default: $CONSUL_PORT, else 8500
      # token = "${CONSUL_HTTP_TOKEN:-}"
      # address = ""          # advertised address; empty: the listener's, or this host's name if 0.0.0.0
      # check_interval_secs = 10.0
      # deregister_critical_after_secs = 60.0

Consul being down never stops the daemon: registration is retried with jittered backoff (up to
``max_backoff_secs``) in the background, and a failed deregistration is logged.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import msgspec

from airisd.errors import ConfigError

log = logging.getLogger("airisd.consul")

SERVICE_NAMES = {"metrics": "metrics-service", "log": "log-service", "trace": "trace-service",
                 "alert": "alert-service"}


class ConsulConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    host: str = "localhost"
    port: int = 8500
    scheme: str = "http"
    token: str = ""
    address: str = ""
    check_interval_secs: float = 10.0
    deregister_critical_after_secs: float = 60.0
    timeout_secs: float = 5.0
    max_backoff_secs: float = 60.0

    def validate(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {self.scheme!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        for name in ("check_interval_secs", "deregister_critical_after_secs", "timeout_secs",
                     "max_backoff_secs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def parse_consul_config(raw: dict[str, Any], *, source: str,
                        environ: Mapping[str, str] | None = None) -> ConsulConfig:
    """``[consul]`` from the config file; host and port default to the seed's CONSUL_HOST and
    CONSUL_PORT. ConfigError naming the key when something is wrong."""
    env = os.environ if environ is None else environ
    defaults = {"host": env.get("CONSUL_HOST") or "localhost", "port": env.get("CONSUL_PORT") or 8500}
    try:
        cfg = msgspec.convert({**defaults, **raw}, ConsulConfig, strict=False)
        cfg.validate()
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"{source}: [consul]: {exc}") from None
    return cfg


@dataclass
class Registration:
    role: str
    host: str
    port: int
    tls: bool = False

    def payload(self, cfg: ConsulConfig) -> dict[str, Any]:
        wildcard = self.host in ("0.0.0.0", "::", "")
        address = cfg.address or (socket.gethostname() if wildcard else self.host)
        scheme = "https" if self.tls else "http"
        return {
            "ID": self.service_id(address),
            "Name": SERVICE_NAMES[self.role],
            "Address": address,
            "Port": self.port,
            "Tags": ["airisd", self.role],
            "Meta": {"role": self.role},
            "Check": {
                "Name": f"{SERVICE_NAMES[self.role]} /health",
                "HTTP": f"{scheme}://{address}:{self.port}/health",
                "Interval": f"{cfg.check_interval_secs:g}s",
                "Timeout": f"{cfg.timeout_secs:g}s",
                "DeregisterCriticalServiceAfter": f"{cfg.deregister_critical_after_secs:g}s",
                "TLSSkipVerify": False,
            },
        }

    def service_id(self, address: str) -> str:
        return f"{SERVICE_NAMES[self.role]}-{address}-{self.port}"


class ConsulRegistrar:
    """Registers every role of this process; ``run`` retries until done, ``deregister`` undoes it."""

    def __init__(self, cfg: ConsulConfig, registrations: list[Registration]) -> None:
        self.cfg = cfg
        self.registrations = registrations
        self.registered: list[str] = []
        self.base_url = f"{cfg.scheme}://{cfg.host}:{cfg.port}"

    @classmethod
    def for_listeners(cls, cfg: ConsulConfig, listeners: list[Any]) -> ConsulRegistrar | None:
        """One registration per role listener of this process; None when [consul] is off."""
        if not cfg.enabled:
            return None
        return cls(cfg, [Registration(lst.role, lst.host, lst.port) for lst in listeners])

    def _client(self) -> httpx.AsyncClient:
        headers = {"X-Consul-Token": self.cfg.token} if self.cfg.token else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.cfg.timeout_secs)

    async def register_once(self) -> None:
        async with self._client() as client:
            for reg in self.registrations:
                body = reg.payload(self.cfg)
                if body["ID"] in self.registered:
                    continue
                resp = await client.put("/v1/agent/service/register", json=body)
                resp.raise_for_status()
                self.registered.append(body["ID"])
                log.info("registered with consul", extra={"kv": {"service": body["Name"], "id": body["ID"],
                                                                  "consul": self.base_url}})

    async def run(self) -> None:
        """Register, retrying with jittered exponential backoff while Consul is unreachable."""
        delay = 1.0
        while True:
            try:
                await self.register_once()
                return
            except httpx.HTTPError as exc:
                log.warning("consul registration failed; retrying",
                            extra={"kv": {"consul": self.base_url, "error": str(exc) or type(exc).__name__,
                                          "retry_in_secs": round(delay, 1)}})
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.cfg.max_backoff_secs)

    async def deregister(self) -> None:
        async with self._client() as client:
            for service_id in list(self.registered):
                try:
                    resp = await client.put(f"/v1/agent/service/deregister/{service_id}")
                    resp.raise_for_status()
                    self.registered.remove(service_id)
                    log.info("deregistered from consul", extra={"kv": {"id": service_id}})
                except httpx.HTTPError as exc:
                    log.error("consul deregistration failed",
                              extra={"kv": {"id": service_id, "error": str(exc) or type(exc).__name__}})


class ConsulResolver:
    """The base URL of a passing instance of a service, from Consul's health API.

    The alert role uses it to find the metrics and log roles when they run in other processes and
    ``[alerting] metrics_url`` / ``logs_url`` are empty. Instances are taken in turn; the list is
    asked again after ``cache_secs`` or when it is empty. No passing instance is an error for that
    evaluation (the rule's state is left as it was), not for the daemon.
    """

    def __init__(self, cfg: ConsulConfig, service: str, *, cache_secs: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self.service = service
        self.cache_secs = cache_secs
        headers = {"X-Consul-Token": cfg.token} if cfg.token else {}
        self._client = httpx.AsyncClient(base_url=f"{cfg.scheme}://{cfg.host}:{cfg.port}", headers=headers,
                                         timeout=cfg.timeout_secs, transport=transport)
        self._urls: list[str] = []
        self._fetched = 0.0
        self._next = 0

    async def __call__(self) -> str:
        now = time.monotonic()
        if not self._urls or now - self._fetched > self.cache_secs:
            resp = await self._client.get(f"/v1/health/service/{self.service}", params={"passing": "1"})
            resp.raise_for_status()
            urls = []
            for entry in resp.json() or []:
                svc = entry.get("Service") or {}
                address = svc.get("Address") or (entry.get("Node") or {}).get("Address")
                port = svc.get("Port")
                if address and port:
                    meta = svc.get("Meta") or {}
                    scheme = "https" if meta.get("scheme") == "https" else "http"
                    host = f"[{address}]" if ":" in address else address
                    urls.append(f"{scheme}://{host}:{port}")
            self._urls, self._fetched = urls, now
        if not self._urls:
            raise RuntimeError(f"no passing instance of {self.service} in Consul")
        url = self._urls[self._next % len(self._urls)]
        self._next += 1
        return url

    async def aclose(self) -> None:
        await self._client.aclose()
