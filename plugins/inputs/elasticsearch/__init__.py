"""Elasticsearch bulk compatibility on the log role: POST /_bulk and /{index}/_bulk, POST
/{index}/_doc, and the calls clients make first (GET / with the product header that the official
clients check on every response, GET /_cluster/health, GET /_license), so Fluent Bit, Vector,
Logstash, Filebeat-style shippers and elasticsearch-py can send logs to airisd.

Answers have Elasticsearch's shapes: the bulk response ``{"took", "errors", "items"}`` with one
item per action (201, or 400 with an ``error`` for a document that cannot be stored, or for
``update``/``delete``, which an append-only log store does not do); a malformed body is a 400
``{"error": {"root_cause", "type", "reason"}, "status": 400}``; full queues are a 429
``es_rejected_execution_exception``, which the clients retry. Document mapping: bulk.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from airisd_plugins.inputs.elasticsearch.bulk import BulkError, doc_to_record, new_id, parse_bulk
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, Backpressure, PayloadTooLarge, ValidationError
from airisd.hookspecs import hookimpl
from airisd.http.request import read_body
from airisd.model import Batch, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
JSON = "application/json"


def es_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=JSON, headers={**PRODUCT, **(headers or {})}
    )


def es_error(status: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    cause = {"type": kind, "reason": reason}
    return es_json({"error": {"root_cause": [cause], **cause}, "status": status}, status, headers)


class ElasticsearchConfig(PluginConfig):
    ## The version GET / reports. Clients pick their wire format from its major version: 8.x
    ## suits Fluent Bit, Vector, Logstash 8 and elasticsearch-py 8 and 9.
    version: str = "8.17.0"
    ## The cluster name GET / reports.
    cluster_name: str = "airisd"
    ## Most actions in one _bulk request.
    max_actions: int = 50_000

    def validate(self) -> None:
        parts = self.version.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"version must look like 8.17.0, got {self.version!r}")
        if self.max_actions < 1:
            raise ValueError(f"max_actions must be at least 1, got {self.max_actions}")


class ElasticsearchInput(Input):
    name: ClassVar[str] = "elasticsearch"
    role: ClassVar[str | None] = "log"
    Config: ClassVar[type[ElasticsearchConfig]] = ElasticsearchConfig
    description: ClassVar[str] = "Elasticsearch bulk API: POST /_bulk, /{index}/_bulk, /{index}/_doc"
    config: ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.node_name = str(ctx.settings.get("hostname") or socket.gethostname())
        self.m_ingested = ctx.metrics.counter("logs_ingested_total", "Log records accepted", ("input",))
        self.m_rejected = ctx.metrics.counter(
            "logs_rejected_total", "Log requests refused, by reason", ("input", "reason")
        )

    def routes(self) -> Sequence[Route]:
        return (
            Route("GET", "/", self.info, name="es_info", scope="write"),
            Route("HEAD", "/", self.info, name="es_info_head", scope="write"),
            Route("GET", "/_cluster/health", self.health, name="es_cluster_health", scope="write"),
            Route("GET", "/_license", self.license, name="es_license", scope="write"),
            Route("POST", "/_bulk", self.bulk, name="es_bulk", scope="write"),
            Route("PUT", "/_bulk", self.bulk, name="es_bulk_put", scope="write"),
            Route("POST", "/{index}/_bulk", self.bulk, name="es_index_bulk", scope="write"),
            Route("PUT", "/{index}/_bulk", self.bulk, name="es_index_bulk_put", scope="write"),
            Route("POST", "/{index}/_doc", self.doc, name="es_index_doc", scope="write"),
        )

    async def info(self, request: Request) -> Response:
        major = self.config.version.split(".")[0]
        return es_json(
            {
                "name": self.node_name,
                "cluster_name": self.config.cluster_name,
                "cluster_uuid": "airisd-log-role",
                "version": {
                    "number": self.config.version,
                    "build_flavor": "default",
                    "build_type": "airisd",
                    "build_hash": "airisd",
                    "build_date": "2024-01-15T00:00:00.000Z",
                    "build_snapshot": False,
                    "lucene_version": "9.12.0",
                    "minimum_wire_compatibility_version": f"{int(major) - 1}.17.0",
                    "minimum_index_compatibility_version": f"{int(major) - 1}.0.0",
                },
                "tagline": "You Know, for Search",
            }
        )

    async def health(self, request: Request) -> Response:
        return es_json(
            {
                "cluster_name": self.config.cluster_name,
                "status": "green",
                "timed_out": False,
                "number_of_nodes": 1,
                "number_of_data_nodes": 1,
                "active_primary_shards": 0,
                "active_shards": 0,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": 0,
                "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0,
            }
        )

    async def license(self, request: Request) -> Response:
        return es_json(
            {
                "license": {
                    "status": "active",
                    "uid": "airisd",
                    "type": "basic",
                    "issue_date_in_millis": 0,
                    "max_nodes": 1000,
                    "issued_to": self.config.cluster_name,
                    "issuer": "airisd",
                    "start_date_in_millis": -1,
                }
            }
        )

    async def _read(self, request: Request) -> bytes | Response:
        try:
            return await read_body(request, self.max_body)
        except PayloadTooLarge as exc:
            self.m_rejected.inc(1, self.name, "payload_too_large")
            return es_error(413, "content_too_long_exception", exc.message)
        except AirisError as exc:
            self.m_rejected.inc(1, self.name, "invalid_body")
            return es_error(400, "parse_exception", exc.message)

    async def _emit(self, records: list[Any]) -> Response | None:
        try:
            await self.ctx.emit(Batch(Signal.LOGS, records))
        except Backpressure as exc:
            return es_error(
                429,
                "es_rejected_execution_exception",
                exc.message,
                headers={"Retry-After": str(max(1, exc.retry_after_secs))},
            )
        except AirisError as exc:
            return es_error(503, "unavailable_shards_exception", exc.message)
        self.m_ingested.inc(len(records), self.name)
        return None

    async def bulk(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await self._read(request)
        if isinstance(body, Response):
            return body
        try:
            result = parse_bulk(
                body,
                default_index=request.path_params.get("index"),
                now_ns=self.ctx.clock.time_ns(),
                max_actions=self.config.max_actions,
            )
        except BulkError as exc:
            self.m_rejected.inc(1, self.name, "invalid_body")
            return es_error(400, exc.kind, exc.reason)
        if result.records:
            failed = await self._emit(result.records)
            if failed is not None:
                return failed
        refused = len(result.items) - len(result.records)
        if refused:
            self.m_rejected.inc(refused, self.name, "invalid_document")
        return es_json(
            {
                "took": int((time.perf_counter() - started) * 1000),
                "errors": result.errors,
                "items": result.items,
            }
        )

    async def doc(self, request: Request) -> Response:
        body = await self._read(request)
        if isinstance(body, Response):
            return body
        index = request.path_params["index"]
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return es_error(400, "document_parsing_exception", f"failed to parse: {exc}")
        try:
            record = doc_to_record(doc, index=index, doc_id=None, now_ns=self.ctx.clock.time_ns())
        except ValidationError as exc:
            self.m_rejected.inc(1, self.name, "invalid_document")
            return es_error(400, "document_parsing_exception", exc.message)
        failed = await self._emit([record])
        if failed is not None:
            return failed
        return es_json(
            {
                "_index": index,
                "_id": new_id(),
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": 0,
                "_primary_term": 1,
            },
            201,
        )


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [ElasticsearchInput]


plugin_class = ElasticsearchInput
