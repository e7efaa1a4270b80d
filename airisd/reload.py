"""Hot reload: SIGHUP, or an admin's ``POST /admin/reload``, re-reads the configuration.

The new file is loaded the way ``airisd run`` loaded the first one (same ``--config``, ``--set``,
``--role``, ``--data-dir``, environment) and validated completely: every section, and every plugin
section by building the plugins as ``airisd config check`` does. If anything is wrong the reload is
refused, the reason is logged (and answered with 422 CONFIG_INVALID) and the running config stays.

A valid config is applied as far as it can be without dropping a connection or a queued record:

applied live
    ``agent.log_level``, ``agent.log_format``, ``agent.shutdown_timeout_secs``,
    ``http.retry_after_secs``, and every ``[[processors.*]]`` table (the processor chain is rebuilt
    from the new settings and swapped in between two batches).
needs a restart (reported in ``restart_required`` and logged as a warning, the old value stays)
    ``agent.role``, ``agent.data_dir``, ``agent.hostname``, ``[listeners]``, the rest of ``[http]``,
    ``[stores]``, ``[auth]``, ``[alerting]``, ``[tracing]``, ``[consul]``, ``[[inputs.*]]`` and
    ``[[outputs.*]]``:
    they own sockets, open stores or background tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from airisd.config import Config
from airisd.errors import ApiError, ConfigError
from airisd.http.envelope import ok
from airisd.logsetup import setup_logging
from airisd.model import Signal
from airisd.plugin import Processor, Route

if TYPE_CHECKING:
    from airisd.daemon import Daemon

log = logging.getLogger("airisd.reload")

LIVE_AGENT_KEYS = ("log_level", "log_format", "shutdown_timeout_secs")
LIVE_HTTP_KEYS = ("retry_after_secs",)
RESTART_SECTIONS = ("listeners", "stores", "auth", "alerting", "tracing", "consul", "inputs", "outputs")


class ConfigInvalid(ApiError):
    status = 422
    code = "CONFIG_INVALID"


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def diff(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(keys that can change live, keys that need a restart) among those that differ."""
    live: list[str] = []
    restart: list[str] = []
    for section, keys in (("agent", LIVE_AGENT_KEYS), ("http", LIVE_HTTP_KEYS)):
        before, after = _plain(getattr(old, section)), _plain(getattr(new, section))
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                (live if key in keys else restart).append(f"{section}.{key}")
    if _plain(old.processors) != _plain(new.processors):
        live.append("processors")
    restart += [s for s in RESTART_SECTIONS if _plain(getattr(old, s)) != _plain(getattr(new, s))]
    return live, restart


class Reloader:
    """Owns the reload of one daemon; ``load`` re-reads the config as the command line asked."""

    def __init__(self, daemon: Daemon, load: Callable[[], Config] | None) -> None:
        self.daemon = daemon
        self.load = load
        self._lock = anyio.Lock()
        self.reloads = daemon.metrics.counter("config_reloads_total", "Config reloads, by result",
                                              ("result",))

    def routes(self) -> list[Route]:
        return [Route("POST", "/admin/reload", self.handle, name="admin_reload", scope="admin")]

    async def handle(self, request: Request) -> Response:
        try:
            result = await self.reload(trigger="POST /admin/reload")
        except ConfigError as exc:
            raise ConfigInvalid(f"config refused, the running one is kept: {exc.message}",
                                details={"error": exc.message}) from None
        return ok(request, result, message="Config reloaded")

    async def reload(self, *, trigger: str = "SIGHUP") -> dict[str, Any]:
        """Validate and apply; raise ConfigError (after logging it) if the new config is refused."""
        async with self._lock:
            try:
                if self.load is None:
                    raise ConfigError("this daemon was not started from a config file; nothing to re-read")
                new = await anyio.to_thread.run_sync(self._load_and_check)
            except ConfigError as exc:
                self.reloads.inc(1, "refused")
                log.error("config reload refused; keeping the running config",
                          extra={"kv": {"trigger": trigger, "error": exc.message}})
                raise
            live, restart = diff(self.daemon.config, new)
            await self._apply(new, live)
            self.reloads.inc(1, "ok")
            log.info("config reloaded", extra={"kv": {"trigger": trigger, "source": new.source,
                                                      "applied": ",".join(live) or "-"}})
            if restart:
                log.warning("config changes that need a restart were not applied",
                            extra={"kv": {"keys": ",".join(restart)}})
            return {"source": new.source, "applied": live, "restart_required": restart}

    def _load_and_check(self) -> Config:
        from airisd.daemon import Daemon

        assert self.load is not None
        new = self.load()
        Daemon(new, self.daemon.registry).build()  # every plugin section, listeners, stores, auth
        return new

    async def _apply(self, new: Config, live: list[str]) -> None:
        d = self.daemon
        agent = d.config.agent
        for key in LIVE_AGENT_KEYS:
            setattr(agent, key, getattr(new.agent, key))
        d.config.http.retry_after_secs = new.http.retry_after_secs
        if d.pipeline is not None:
            d.pipeline.retry_after_secs = new.http.retry_after_secs
        if any(k in live for k in ("agent.log_level", "agent.log_format")):
            setup_logging(level=agent.log_level, fmt=agent.log_format)
        if "processors" in live:
            await self._swap_processors(new)

    async def _swap_processors(self, new: Config) -> None:
        from airisd.daemon import PluginInstance, plugin_config

        d = self.daemon
        fresh: list[PluginInstance] = []
        for name, tables in new.processors.items():
            info = d.registry.get("processor", name)
            for i, raw in enumerate(tables):
                cfg = plugin_config(info.cls, dict(raw), where=f"{new.source}: [[processors.{name}]]")
                plugin = info.cls(cfg, d._ctx("processor", name))
                await plugin.start()
                alias = getattr(cfg, "alias", "")
                fresh.append(PluginInstance("processors", name, i, plugin, alias, state="running"))
        chain: dict[Signal, list[Processor]] = {s: [] for s in Signal}
        for inst in fresh:
            assert isinstance(inst.plugin, Processor)
            for s in inst.plugin.signals:
                chain[s].append(inst.plugin)
        old = [inst for inst in d.instances if inst.section == "processors"]
        assert d.pipeline is not None
        d.pipeline.processors = chain  # one assignment: a batch sees the old chain or the new one
        d.instances = [inst for inst in d.instances if inst.section != "processors"] + fresh
        d.config.processors = new.processors
        for inst in old:
            try:
                await inst.plugin.shutdown()
            except Exception as exc:
                log.error("processor shutdown failed",
                          extra={"kv": {"plugin": inst.label, "error": str(exc)}})
            inst.state = "stopped"
