"""The daemon: builds plugins from the config, runs them and the role listeners in one task
group, and stops cleanly.

Start-up order: outputs (stores open), processors, then inputs and listeners, so nothing is
accepted before there is somewhere to put it. Shutdown is the reverse: listeners stop accepting,
the pipeline refuses new batches, every output drains its queue, then plugins shut down.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import uvicorn
from anyio.abc import TaskStatus

from airisd.auth.http import AuthApi
from airisd.backup import hold_data_dir
from airisd.buffer.disk import BufferLocked
from airisd.config import PLUGIN_SECTIONS, Config, parse_address
from airisd.consul import ConsulRegistrar, parse_consul_config
from airisd.errors import ConfigError
from airisd.http.app import HttpContext, build_app
from airisd.logsetup import add_secret, mask
from airisd.model import Signal
from airisd.pipeline import OutputRunner, Pipeline
from airisd.plugin import Clock, Input, Output, Plugin, PluginContext, Processor, Route
from airisd.query import QUERY_PROTOCOLS
from airisd.registry import Registry
from airisd.reload import Reloader
from airisd.roles.alerts import AlertRole
from airisd.roles.common import CommonApi
from airisd.roles.debug import DebugApi
from airisd.roles.logs import LogsQueryApi
from airisd.roles.metrics import MetricsQueryApi
from airisd.roles.traces import TracesQueryApi
from airisd.selfmetrics import Registry as MetricsRegistry
from airisd.selftrace import SelfTracer, TracingConfig

log = logging.getLogger("airisd.daemon")

ROLE_SIGNAL = {"metrics": Signal.METRICS, "log": Signal.LOGS, "trace": Signal.TRACES}


@dataclass
class PluginInstance:
    section: str  # inputs | processors | outputs
    name: str
    index: int
    plugin: Plugin
    alias: str
    state: str = "created"
    error: str = ""

    @property
    def label(self) -> str:
        return self.alias or (self.name if self.index == 0 else f"{self.name}.{self.index}")


def plugin_config(info_cls: type[Plugin], raw: dict[str, Any], *, where: str) -> Any:
    try:
        cfg = msgspec.convert(raw, info_cls.Config, strict=False)
    except msgspec.ValidationError as exc:
        from airisd.config import _explain

        raise ConfigError(f"{where}: {_explain(exc)}") from None
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def check_buffer_config(cls: type[Output], cfg: Any, *, where: str) -> None:
    """A store commits before it acknowledges: a disk buffer in front of it would only add a copy."""
    buffer = getattr(cfg, "buffer", None)
    if cls.durable and buffer is not None and buffer.type == "disk":
        raise ConfigError(f"{where}: buffer.type = 'disk' is not allowed on {cls.name!r}: it is a durable store "
                          "that acknowledges only committed data, so it needs no disk buffer (remove buffer)")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Listener:
    role: str
    host: str
    port: int
    routes: list[Route]
    server: _QuietServer | None = None
    sock: socket.socket | None = None


@dataclass
class Daemon:
    config: Config
    registry: Registry
    clock: Clock = field(default_factory=Clock)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    config_loader: Callable[[], Config] | None = None  # re-reads the config on SIGHUP (airisd/reload.py)

    def __post_init__(self) -> None:
        self.roles = self.config.roles()
        self.data_dir = Path(self.config.agent.data_dir)
        self.started_at = time.monotonic()
        self.signals = {ROLE_SIGNAL[r] for r in self.roles if r in ROLE_SIGNAL}
        self.instances: list[PluginInstance] = []
        self.listeners: list[Listener] = []
        self.runners: list[OutputRunner] = []
        self.pipeline: Pipeline | None = None
        self.query_stores: dict[Signal, Any] = {}
        self.tracer: SelfTracer | None = None
        self.alert_role: AlertRole | None = None

    # -- building ------------------------------------------------------------------------------
    def _ctx(self, kind: str, name: str) -> PluginContext:
        settings = {
            "roles": self.roles,
            "signals": sorted(s.value for s in self.signals),
            "max_body_bytes": self.config.http.max_body_bytes,
            "hostname": self.config.agent.hostname or socket.gethostname(),
        }
        return PluginContext(data_dir=self.data_dir, log=logging.getLogger(f"airisd.{kind}.{name}"),
                             metrics=self.metrics, emit=self._emit, clock=self.clock, settings=settings)

    async def _emit(self, batch: Any) -> None:
        assert self.pipeline is not None
        await self.pipeline.submit(batch)

    def build(self) -> None:
        """Instantiate every configured plugin; raise ConfigError naming the first bad one."""
        self.consul_config = parse_consul_config(self.config.consul, source=self.config.source)
        kinds = {"inputs": "input", "processors": "processor", "outputs": "output"}
        for section in PLUGIN_SECTIONS:
            for name, instances in getattr(self.config, section).items():
                info = self.registry.get(kinds[section], name)
                for i, raw in enumerate(instances):
                    where = f"{self.config.source}: [[{section}.{name}]]" + (f" #{i + 1}" if len(instances) > 1 else "")
                    cfg = plugin_config(info.cls, dict(raw), where=where)
                    register_config_secrets(cfg)
                    cls = info.cls
                    if issubclass(cls, Input) and cls.role is not None and cls.role not in self.roles:
                        continue  # its role is not run by this process
                    if issubclass(cls, Output) and not self._output_signals(cls, cfg):
                        continue
                    if issubclass(cls, Output):
                        check_buffer_config(cls, cfg, where=where)
                    plugin = cls(cfg, self._ctx(kinds[section], name))
                    self.instances.append(PluginInstance(section, name, i, plugin, getattr(cfg, "alias", "")))
        self._build_pipeline()
        self._build_tracer()
        # auth (issue 6): [auth], JWT_SECRET and AIRISD_ADMIN_PASSWORD checked here; opened in run()
        self.auth_api = AuthApi.from_config(self.config)
        self.auth_check = self.auth_api.check
        self.debug_api = DebugApi(self.data_dir)
        self.reloader = Reloader(self, self.config_loader)  # SIGHUP, POST /admin/reload
        if "alert" in self.roles:  # alert role (issue 5): engine over the stores or the roles' HTTP APIs
            self.alert_role = AlertRole(
                self.config.alerting, source=self.config.source, data_dir=self.data_dir,
                channel_types={i.name: i.cls for i in self.registry.of_kind("alerting")},
                ctx=self._ctx("alerting", "engine"),
                # this data dir's stores, unless [alerting] names URLs or Consul finds the roles
                metric_store=self.query_stores.get(Signal.METRICS),
                log_store=self.query_stores.get(Signal.LOGS),
                max_body_bytes=self.config.http.max_body_bytes,
                consul=self.consul_config)
        self._build_listeners()

    def _needed_signals(self) -> set[Signal]:
        """The signals whose outputs this process builds: its roles', and the alert role's."""
        needed = set(self.signals)
        if "alert" in self.roles and not self.consul_config.enabled:
            # the alert role reads the metrics and log stores of this data dir (roles of one host
            # share it); with Consul it finds the roles' query APIs instead
            needed |= {Signal.METRICS, Signal.LOGS}
        return needed

    def _output_signals(self, cls: type[Output], cfg: Any) -> set[Signal]:
        wanted = {Signal(s) for s in getattr(cfg, "signals", [])} or set(cls.signals)
        return wanted & set(cls.signals) & self._needed_signals()

    def _build_pipeline(self) -> None:
        processors: dict[Signal, list[Processor]] = {s: [] for s in Signal}
        runners: dict[Signal, list[OutputRunner]] = {s: [] for s in Signal}
        for inst in self.instances:
            if isinstance(inst.plugin, Processor):
                for s in inst.plugin.signals:
                    processors[s].append(inst.plugin)
            elif isinstance(inst.plugin, Output):
                for s in self._output_signals(type(inst.plugin), inst.plugin.config):
                    if s in self.signals:
                        runner = OutputRunner(inst.plugin, s, inst.label, self.metrics)
                        runners[s].append(runner)
                        self.runners.append(runner)
        seen: dict[Path, str] = {}
        for r in self.runners:  # two outputs appending to one log would interleave and lose records
            directory = getattr(r.buffer, "directory", None)
            if directory is not None and (other := seen.setdefault(Path(directory).resolve(), r.name)) != r.name:
                raise ConfigError(f"{self.config.source}: outputs {other!r} and {r.name!r} share the buffer "
                                  f"directory {str(directory)!r}; give each its own buffer.directory (or alias)")
        self.pipeline = Pipeline(processors, runners, self.metrics, retry_after_secs=self.config.http.retry_after_secs)
        # Which output answers each role's queries.
        wanted = {Signal.METRICS: self.config.stores.metrics, Signal.LOGS: self.config.stores.log,
                  Signal.TRACES: self.config.stores.trace}
        for sig, name in wanted.items():
            for inst in self.instances:
                if not isinstance(inst.plugin, Output) or (name and name not in (inst.label, inst.name)):
                    continue
                api = inst.plugin.query_api(sig)
                if api is not None:
                    if not isinstance(api, QUERY_PROTOCOLS[sig.value]):
                        raise ConfigError(f"{self.config.source}: output {inst.label!r} answers {sig.value} queries "
                                          "with an object that lacks methods of airisd.query")
                    self.query_stores[sig] = api
                    break
            # One file serves every role (etc/examples/seed-layout.toml): a store this process does
            # not query is not built, and that is no error.
            if name and sig not in self.query_stores and sig in self._needed_signals():
                raise ConfigError(f"{self.config.source}: [stores] names {name!r} for {sig.value}, "
                                  "but no such output answers queries")

    def _build_tracer(self) -> None:
        try:
            tc = msgspec.convert(self.config.tracing, TracingConfig, strict=False)
            tc.validate()
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(f"{self.config.source}: [tracing]: {exc}") from None
        assert self.pipeline is not None
        if tc.self_tracing and self.pipeline.runners.get(Signal.TRACES):
            self.tracer = SelfTracer(tc, self._emit, self.metrics)

    def _build_listeners(self) -> None:
        for role in self.roles:
            lc = self.config.listeners.get(role)
            if lc is None or not lc.address:
                raise ConfigError(f"{self.config.source}: role {role} has no [listeners.{role}] address")
            host, port = parse_address(lc.address, where=f"listeners.{role}.address")
            routes: list[Route] = []
            routes += CommonApi(role, self.metrics, self.health_detailed, self.started_at).routes()
            routes += self.auth_api.routes() + self.debug_api.routes()  # /auth/login, /debug/profile/*
            routes += self.reloader.routes()  # /admin/reload
            routes += self._role_routes(role)
            for inst in self.instances:
                if isinstance(inst.plugin, Input) and type(inst.plugin).role == role:
                    routes += list(inst.plugin.routes())
            self.listeners.append(Listener(role, host, port, routes))

    def _role_routes(self, role: str) -> list[Route]:
        http = self.config.http
        if role == "metrics":
            store = self._query_store(Signal.METRICS, role)
            return MetricsQueryApi(store, clock=self.clock, max_range_secs=http.max_query_range_secs,
                                   max_points=http.max_result_points, max_page=http.max_page_size).routes()
        if role == "log":
            store = self._query_store(Signal.LOGS, role)
            return LogsQueryApi(store, clock=self.clock, max_range_secs=http.max_query_range_secs,
                                max_results=http.max_page_size * 10, max_page=http.max_page_size).routes()
        if role == "trace":
            return TracesQueryApi(self._query_store(Signal.TRACES, role), clock=self.clock).routes()
        if role == "alert" and self.alert_role is not None:
            return self.alert_role.routes()
        return []

    def _query_store(self, signal: Signal, role: str) -> Any:
        store = self.query_stores.get(signal)
        if store is None:
            raise ConfigError(f"{self.config.source}: the {role} role needs an output that answers "
                              f"{signal.value} queries (add [[outputs.sqlite]])")
        return store

    # -- health ------------------------------------------------------------------------------
    async def health_detailed(self) -> dict[str, Any]:
        plugins = []
        stores: dict[str, Any] = {}
        healthy = True
        for inst in self.instances:
            entry = {"kind": inst.plugin.kind, "name": inst.name, "alias": inst.label, "state": inst.state}
            if inst.error:
                entry["error"] = inst.error
                healthy = False
            check = getattr(inst.plugin, "check", None)
            if check is not None and inst.state == "running":
                result = await check()
                # outputs by their label (what [stores] names); an input beside an output of the
                # same name (a kafka relay) gets its kind in front
                stores[inst.label if inst.plugin.kind == "output" else f"{inst.plugin.kind}:{inst.label}"] = result
                if any(isinstance(v, dict) and v.get("reachable") is False for v in result.values()):
                    healthy = False
            plugins.append(entry)
        queues = {
            f"{r.name}/{r.signal.value}": {"queued_items": r.queued_items,
                                           "max_queue_items": r.settings.max_queue_items,
                                           "state": r.state, "last_error": r.last_error}
            for r in self.runners
        }
        outputs = {f"{r.name}/{r.signal.value}": r.health() for r in self.runners}
        if any(o["corrupt_segments"] for o in outputs.values()):
            healthy = False  # data was lost to a corrupt buffer segment: an operator must look
        report = {"status": "ok" if healthy else "degraded", "roles": self.roles, "plugins": plugins,
                  "queues": queues, "outputs": outputs, "stores": stores,
                  "broken_plugins": [{"entry_point": b.entry_point, "package": b.package, "error": b.error}
                                     for b in self.registry.broken]}
        return _masked(report)  # a backend's error text may quote a password it was given

    # -- running -----------------------------------------------------------------------------
    def _bind(self, listener: Listener) -> socket.socket:
        family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listener.host, listener.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {listener.host}:{listener.port} for the {listener.role} role: {exc.strerror} "
                f"(is another airisd running? `ss -ltnp 'sport = :{listener.port}'`; or change "
                f"[listeners.{listener.role}] address)") from None
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def _serve(self, listener: Listener, *, task_status: TaskStatus[None]) -> None:
        lc = self.config.listeners[listener.role]
        ctx = HttpContext(role=listener.role, metrics=self.metrics, auth_check=getattr(self, "auth_check", None),
                          tracer=self.tracer)
        app = self.auth_api.wrap_asgi(build_app(listener.routes, ctx))  # CORS, when configured
        uconfig = uvicorn.Config(
            # proxy_headers off: uvicorn would take X-Forwarded-For from any 127.0.0.1 peer; the
            # daemon decides whom to believe by [auth] trusted_proxies (auth/http.py client_ip)
            app, loop="none", http="httptools", lifespan="off", access_log=False, log_config=None, proxy_headers=False,
            server_header=False, timeout_keep_alive=30, timeout_graceful_shutdown=5,
            ssl_certfile=lc.tls_cert_file or None, ssl_keyfile=lc.tls_key_file or None,
        )
        assert listener.sock is not None
        server = listener.server = _QuietServer(uconfig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [listener.sock])
            while not server.started:
                if server.should_exit:
                    raise ConfigError(f"the {listener.role} listener failed to start")
                await anyio.sleep(0.005)
            task_status.started()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for listener in self.listeners:  # fail fast on a busy port, before opening stores
            listener.sock = self._bind(listener)
        data_lock = contextlib.ExitStack()  # shared flock: `airisd restore` refuses while it is held
        try:
            data_lock.enter_context(hold_data_dir(self.data_dir))
            await anyio.to_thread.run_sync(self.auth_api.open)  # auth.db, first admin (password shown once)
            async with anyio.create_task_group() as tg:
                await self._start_plugins(tg)
                await self._open_buffers()  # disk buffers recover before anything is accepted
                for runner in self.runners:
                    tg.start_soon(runner.run)
                if self.tracer is not None:
                    tg.start_soon(self.tracer.run)
                if self.alert_role is not None:  # alert role (issue 5): evaluation rounds
                    await tg.start(self.alert_role.run)
                for listener in self.listeners:
                    await tg.start(self._serve, listener)
                    log.info("listening", extra={"kv": {"role": listener.role,
                                                        "address": f"{listener.host}:{listener.port}"}})
                log.info("airisd started",
                         extra={"kv": {"roles": ",".join(self.roles), "data_dir": str(self.data_dir)}})
                self.consul = ConsulRegistrar.for_listeners(self.consul_config, self.listeners)
                if self.consul is not None:
                    tg.start_soon(self.consul.run)  # retried in the background while Consul is down
                task_status.started()
                await self._wait_for_stop_signal()
                with anyio.CancelScope(shield=True):
                    if self.consul is not None:
                        with anyio.move_on_after(5):
                            await self.consul.deregister()
                    await self._stop(tg)
        finally:
            data_lock.close()
            self.debug_api.close()
            self.auth_api.close()
            for listener in self.listeners:
                if listener.sock is not None:
                    listener.sock.close()

    async def _start_plugins(self, tg: anyio.abc.TaskGroup) -> None:
        order = {"outputs": 0, "processors": 1, "inputs": 2}
        for inst in sorted(self.instances, key=lambda i: order[i.section]):
            try:
                await inst.plugin.start()
            except Exception as exc:
                raise ConfigError(f"{inst.section}.{inst.name} failed to start: {type(exc).__name__}: {exc}") from exc
            inst.state = "running"
            await tg.start(self._run_plugin, inst)

    async def _open_buffers(self) -> None:
        for runner in self.runners:
            try:
                await runner.open()
            except (BufferLocked, OSError) as exc:
                raise ConfigError(f"outputs.{runner.output.name} ({runner.name}/{runner.signal.value}): "
                                  f"cannot open its buffer: {exc}") from exc

    async def _run_plugin(self, inst: PluginInstance, *, task_status: TaskStatus[None]) -> None:
        try:
            await inst.plugin.run(task_status=task_status)
        except Exception as exc:  # a background task failing is reported, not fatal
            inst.error = f"{type(exc).__name__}: {exc}"
            inst.state = "failed"
            log.error("plugin task failed", extra={"kv": {"plugin": inst.label, "error": inst.error}})

    async def _wait_for_stop_signal(self) -> None:
        self._stop_event = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                    async for signum in signals:
                        if signum == signal.SIGHUP:  # refusals are logged by the reloader
                            tg.start_soon(self._reload_quietly)
                            continue
                        log.info("stopping", extra={"kv": {"signal": signal.Signals(signum).name}})
                        self._stop_event.set()
                        return

            tg.start_soon(watch_signals)
            await self._stop_event.wait()
            tg.cancel_scope.cancel()

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):
            await self.reloader.reload(trigger="SIGHUP")

    def request_stop(self) -> None:
        """Stop as SIGTERM would (tests, reload)."""
        event = getattr(self, "_stop_event", None)
        if event is not None:
            event.set()

    async def _stop(self, tg: anyio.abc.TaskGroup) -> None:
        timeout = self.config.agent.shutdown_timeout_secs
        assert self.pipeline is not None
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.should_exit = True
        with anyio.move_on_after(timeout / 2):
            # uvicorn offers no event for "all connections closed": poll its state.
            while any(lst.server is not None and lst.server.started and not _server_done(lst.server)  # noqa: ASYNC110
                      for lst in self.listeners):
                await anyio.sleep(0.02)
        # Inputs stop next, while the pipeline still accepts, so what they buffered is delivered.
        for inst in self.instances:
            if isinstance(inst.plugin, Input):
                try:
                    with anyio.move_on_after(timeout / 4):
                        await inst.plugin.shutdown()
                except Exception as exc:
                    log.error("input shutdown failed", extra={"kv": {"plugin": inst.label, "error": str(exc)}})
        if self.tracer is not None:
            await self.tracer.flush()
        if self.alert_role is not None:  # alert role (issue 5): before the stores it reads close
            await self.alert_role.stop()
        self.pipeline.accepting = False
        for runner in self.runners:
            await runner.close()
        with anyio.move_on_after(timeout / 2) as scope:
            for runner in self.runners:
                await runner.wait_idle()
        if scope.cancelled_caught:
            left = {f"{r.name}/{r.signal.value}": r.queued_items for r in self.runners if r.queued_items}
            log.error("shutdown timed out with data still queued", extra={"kv": {"queued": left}})
        for inst in reversed(self.instances):
            try:
                with anyio.move_on_after(5):
                    await inst.plugin.shutdown()
            except Exception as exc:
                log.error("plugin shutdown failed", extra={"kv": {"plugin": inst.label, "error": str(exc)}})
            inst.state = "stopped"
        tg.cancel_scope.cancel()
        log.info("airisd stopped")


def _server_done(server: uvicorn.Server) -> bool:
    return not server.server_state.connections and not server.server_state.tasks and \
        all(not s.is_serving() for s in getattr(server, "servers", []))


_SECRET_OPTION = re.compile(r"password|secret|token|api_key|credential", re.IGNORECASE)


def register_config_secrets(cfg: Any) -> None:
    """Mask, in every log line and health report, the values of a plugin's secret options
    (``password = "..."`` written in the file, not only ``${VAR}`` from the environment)."""
    for name in getattr(cfg, "__struct_fields__", ()):
        value = getattr(cfg, name, None)
        if isinstance(value, str) and _SECRET_OPTION.search(name):
            add_secret(value)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
