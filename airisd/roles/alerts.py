"""The alert role's HTTP API: thin handlers over AlertService (airisd.alerting.service).

Reads want scope "read", changes "admin" (rules and channels decide who gets woken up at night),
and ``POST /api/v2/alerts`` scope "write" so a Prometheus or Loki ruler can push with an
ingest-only API key. Answers use the seed's envelope; creations answer 201.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from starlette.requests import Request
from starlette.responses import Response

from airisd.alerting.config import alerting_config
from airisd.alerting.engine import AlertEngine
from airisd.alerting.inprocess import HttpLogSource, HttpMetricSource, StoreLogSource, StoreMetricSource
from airisd.alerting.redis_store import open_store
from airisd.alerting.service import AlertService
from airisd.alerting.sources import LogSource, MetricSource
from airisd.errors import ValidationError
from airisd.http.envelope import ok
from airisd.http.request import Params, read_json
from airisd.plugin import AlertChannel, PluginContext, Route


def _bool(p: Params, name: str) -> bool | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    low = raw.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValidationError(f"{name}: must be true or false, got {raw[:20]!r}", details={"field": name})


class AlertsApi:
    def __init__(self, service: AlertService, *, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        r, a = "read", "admin"
        return [
            Route("POST", "/rules", self.create_rule, name="rules_create", scope=a),
            Route("GET", "/rules", self.list_rules, name="rules_list", scope=r),
            Route("GET", "/rules/{id}", self.get_rule, name="rules_get", scope=r),
            Route("PUT", "/rules/{id}", self.replace_rule, name="rules_replace", scope=a),
            Route("PATCH", "/rules/{id}", self.patch_rule, name="rules_patch", scope=a),
            Route("DELETE", "/rules/{id}", self.delete_rule, name="rules_delete", scope=a),
            Route("POST", "/rules/{id}/enable", self.enable_rule, name="rules_enable", scope=a),
            Route("POST", "/rules/{id}/disable", self.disable_rule, name="rules_disable", scope=a),
            Route("POST", "/channels", self.create_channel, name="channels_create", scope=a),
            Route("GET", "/channels", self.list_channels, name="channels_list", scope=r),
            Route("GET", "/channels/{id}", self.get_channel, name="channels_get", scope=r),
            Route("PUT", "/channels/{id}", self.replace_channel, name="channels_replace", scope=a),
            Route("PATCH", "/channels/{id}", self.patch_channel, name="channels_patch", scope=a),
            Route("DELETE", "/channels/{id}", self.delete_channel, name="channels_delete", scope=a),
            Route("POST", "/channels/{id}/test", self.test_channel, name="channels_test", scope=a),
            Route("GET", "/alerts", self.list_alerts, name="alerts_list", scope=r),
            Route("GET", "/alerts/history", self.list_history, name="alerts_history", scope=r),
            Route("POST", "/silences", self.create_silence, name="silences_create", scope=a),
            Route("GET", "/silences", self.list_silences, name="silences_list", scope=r),
            Route("GET", "/silences/{id}", self.get_silence, name="silences_get", scope=r),
            Route("DELETE", "/silences/{id}", self.delete_silence, name="silences_delete", scope=a),
            Route("POST", "/api/v2/alerts", self.receive_alerts, name="alertmanager_alerts", scope="write"),
        ]

    async def _body(self, request: Request) -> Any:
        return await read_json(request, self.max_body_bytes)

    # -- rules -------------------------------------------------------------------------------
    async def create_rule(self, request: Request) -> Response:
        Params(request, ())
        rule = await self.service.create_rule(await self._body(request))
        return ok(request, rule, message="Alert rule created", status=201)

    async def list_rules(self, request: Request) -> Response:
        p = Params(request, {"enabled"})
        rules = await self.service.list_rules(enabled=_bool(p, "enabled"))
        return ok(request, rules, message=f"{len(rules)} rules")

    async def get_rule(self, request: Request) -> Response:
        Params(request, ())
        return ok(request, await self.service.get_rule(request.path_params["id"]))

    async def replace_rule(self, request: Request) -> Response:
        Params(request, ())
        body = await self._body(request)
        return ok(
            request,
            await self.service.replace_rule(request.path_params["id"], body),
            message="Alert rule updated",
        )

    async def patch_rule(self, request: Request) -> Response:
        Params(request, ())
        body = await self._body(request)
        return ok(
            request,
            await self.service.patch_rule(request.path_params["id"], body),
            message="Alert rule updated",
        )

    async def delete_rule(self, request: Request) -> Response:
        Params(request, ())
        await self.service.delete_rule(request.path_params["id"])
        return ok(request, None, message="Alert rule deleted")

    async def enable_rule(self, request: Request) -> Response:
        Params(request, ())
        return ok(
            request,
            await self.service.set_rule_enabled(request.path_params["id"], True),
            message="Alert rule enabled",
        )

    async def disable_rule(self, request: Request) -> Response:
        Params(request, ())
        return ok(
            request,
            await self.service.set_rule_enabled(request.path_params["id"], False),
            message="Alert rule disabled",
        )

    # -- channels ----------------------------------------------------------------------------
    async def create_channel(self, request: Request) -> Response:
        Params(request, ())
        channel = await self.service.create_channel(await self._body(request))
        return ok(request, channel, message="Notification channel created", status=201)

    async def list_channels(self, request: Request) -> Response:
        Params(request, ())
        channels = await self.service.list_channels()
        return ok(request, channels, message=f"{len(channels)} channels")

    async def get_channel(self, request: Request) -> Response:
        Params(request, ())
        return ok(request, await self.service.get_channel(request.path_params["id"]))

    async def replace_channel(self, request: Request) -> Response:
        Params(request, ())
        body = await self._body(request)
        return ok(
            request,
            await self.service.replace_channel(request.path_params["id"], body),
            message="Notification channel updated",
        )

    async def patch_channel(self, request: Request) -> Response:
        Params(request, ())
        body = await self._body(request)
        return ok(
            request,
            await self.service.patch_channel(request.path_params["id"], body),
            message="Notification channel updated",
        )

    async def delete_channel(self, request: Request) -> Response:
        Params(request, ())
        await self.service.delete_channel(request.path_params["id"])
        return ok(request, None, message="Notification channel deleted")

    async def test_channel(self, request: Request) -> Response:
        Params(request, ())
        result = await self.service.test_channel(request.path_params["id"])
        message = "Test notification sent" if result["ok"] else f"Test notification failed: {result['error']}"
        return ok(request, result, message=message)

    # -- alerts and silences -----------------------------------------------------------------
    async def list_alerts(self, request: Request) -> Response:
        p = Params(request, {"rule_id", "state"})
        alerts = await self.service.list_alerts(
            rule_id=p.get("rule_id") or None, state=p.get("state") or None
        )
        return ok(request, alerts, message=f"{len(alerts)} active alerts")

    async def list_history(self, request: Request) -> Response:
        p = Params(request, {"limit", "before", "rule_id", "kind"})
        before = p.get("before")
        before_id: int | None = None
        if before:
            try:
                before_id = int(before)
            except ValueError:
                raise ValidationError(
                    "before: must be an integer (next_before of the previous page)",
                    details={"field": "before"},
                ) from None
        data = await self.service.list_history(
            limit=p.integer("limit", 100, lo=1, hi=1000),
            before=before_id,
            rule_id=p.get("rule_id") or None,
            kind=p.get("kind") or None,
        )
        return ok(request, data, message=f"{len(data['items'])} history entries")

    async def create_silence(self, request: Request) -> Response:
        Params(request, ())
        silence = await self.service.create_silence(await self._body(request))
        return ok(request, silence, message="Silence created", status=201)

    async def list_silences(self, request: Request) -> Response:
        p = Params(request, {"active"})
        silences = await self.service.list_silences(active=_bool(p, "active"))
        return ok(request, silences, message=f"{len(silences)} silences")

    async def get_silence(self, request: Request) -> Response:
        Params(request, ())
        return ok(request, await self.service.get_silence(request.path_params["id"]))

    async def delete_silence(self, request: Request) -> Response:
        Params(request, ())
        await self.service.delete_silence(request.path_params["id"])
        return ok(request, None, message="Silence deleted")

    async def receive_alerts(self, request: Request) -> Response:
        Params(request, ())
        data = await self.service.receive_external_alerts(await self._body(request))
        return ok(request, data, message=f"{data['accepted']} alerts accepted")


class AlertRole:
    """The alert role inside the daemon: the engine, its sources and its routes.

    The engine reads the embedded stores in process unless ``[alerting] metrics_url`` /
    ``logs_url`` name the roles' HTTP query APIs (then with ``alerting.api_key``).
    """

    def __init__(
        self,
        section: dict[str, Any] | None,
        *,
        source: str,
        data_dir: Path,
        channel_types: Mapping[str, type[Any]],  # the registry's "alerting" kind
        ctx: PluginContext,
        metric_store: Any = None,
        log_store: Any = None,
        max_body_bytes: int,
        consul: Any = None,  # airisd.consul.ConsulConfig: find the other roles through Consul
    ) -> None:
        self.config = alerting_config(section, source=source)
        cfg = self.config
        self._http: list[HttpMetricSource | HttpLogSource] = []
        self._resolvers: list[Any] = []
        metrics: MetricSource | None = StoreMetricSource(metric_store) if metric_store is not None else None
        logs: LogSource | None = StoreLogSource(log_store) if log_store is not None else None
        if cfg.metrics_url:
            metrics = HttpMetricSource(
                cfg.metrics_url, api_key=cfg.api_key, timeout_secs=cfg.query_timeout_secs
            )
            self._http.append(metrics)
        if cfg.logs_url:
            logs = HttpLogSource(cfg.logs_url, api_key=cfg.api_key, timeout_secs=cfg.query_timeout_secs)
            self._http.append(logs)
        if consul is not None and consul.enabled:
            # The roles run apart and no URL is configured: ask Consul for a passing instance.
            from airisd.consul import ConsulResolver

            if metrics is None:
                self._resolvers.append(ConsulResolver(consul, "metrics-service"))
                metrics = HttpMetricSource("", api_key=cfg.api_key, timeout_secs=cfg.query_timeout_secs,
                                           resolve=self._resolvers[-1])
                self._http.append(metrics)
            if logs is None:
                self._resolvers.append(ConsulResolver(consul, "log-service"))
                logs = HttpLogSource("", api_key=cfg.api_key, timeout_secs=cfg.query_timeout_secs,
                                     resolve=self._resolvers[-1])
                self._http.append(logs)
        store, cluster = open_store(cfg, data_dir)
        self.engine = AlertEngine(
            store,
            cluster=cluster,
            channel_types={k: v for k, v in channel_types.items() if issubclass(v, AlertChannel)},
            config=cfg,
            ctx=ctx,
            metrics=metrics,
            logs=logs,
        )
        self.api = AlertsApi(AlertService(self.engine), max_body_bytes=max_body_bytes)
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()

    def routes(self) -> list[Route]:
        return self.api.routes()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the store, resume state, then evaluate every interval until stop()."""
        try:
            with anyio.CancelScope() as self._scope:
                await self.engine.start()
                await self.engine.run(task_status=task_status)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Finish the round in progress (a store write is never cut), then close everything."""
        if self._scope is not None:
            self._scope.cancel()
            await self._done.wait()
        for client in [*self._http, *self._resolvers]:
            await client.aclose()
        await self.engine.shutdown()
