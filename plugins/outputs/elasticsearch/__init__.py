"""Logs to Elasticsearch: daily indices ``logs-YYYY.MM.DD``, an index template installed at start,
the bulk API, per-document errors retried (429/5xx) or dead-lettered (mapping conflicts), the
log role's queries answered from the indices (``[stores] log = "elasticsearch"``), and indices
older than ``retention_days`` deleted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import anyio
from airisd_plugins.outputs.elasticsearch.config import ElasticsearchConfig
from airisd_plugins.outputs.elasticsearch.retention import DAY_SECS, delete_groups, expired
from airisd_plugins.outputs.elasticsearch.store import EsLogStore
from airisd_plugins.outputs.elasticsearch.template import index_template
from airisd_plugins.outputs.elasticsearch.writer import DeadLetter, Doc, bulk, prepare, transient

from airisd.errors import TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Output, Plugin

if TYPE_CHECKING:  # the client library is imported when used: loading the plugins must not load it
    from anyio.abc import TaskStatus
    from elasticsearch import AsyncElasticsearch, Elasticsearch


def client_options(c: ElasticsearchConfig) -> dict[str, Any]:
    """What both clients (async for writes, sync for the role's queries) are built with. The
    client's own retries are off: the output runner retries, with backoff, and counts it."""
    kw: dict[str, Any] = {"hosts": list(c.hosts), "request_timeout": c.request_timeout_secs, "max_retries": 0,
                          "retry_on_timeout": False, "verify_certs": c.verify_certs}
    if c.ca_certs:
        kw["ca_certs"] = c.ca_certs
    if c.api_key:
        kw["api_key"] = c.api_key
    elif c.username:
        kw["basic_auth"] = (c.username, c.password)
    return kw


class ElasticsearchOutput(Output):
    name: ClassVar[str] = "elasticsearch"
    Config: ClassVar[type[ElasticsearchConfig]] = ElasticsearchConfig
    description: ClassVar[str] = "Logs to Elasticsearch daily indices (bulk API, dead-letter file); a log store"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.LOGS})
    durable: ClassVar[bool] = False  # accepted once buffered; use buffer = { type = "disk" } for kill -9
    config: ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.label = config.alias or self.name
        directory = Path(config.dead_letter_dir) if config.dead_letter_dir else Path(ctx.data_dir) / "dead-letter"
        self.dead_letter = DeadLetter(directory, self.label)
        self.m_dead = ctx.metrics.counter("output_dead_letter_total",
                                          "Records an output refused for good and wrote to its dead-letter file",
                                          ("output",))
        self._client: AsyncElasticsearch | None = None
        self._sync: Elasticsearch | None = None
        self._store: EsLogStore | None = None
        self._template_ok = not config.install_template
        self._retry_batch: Batch | None = None  # the batch whose write last failed, and what is left of it
        self._retry_docs: list[Doc] = []
        self.m_deleted = ctx.metrics.counter("output_indices_deleted_total",
                                             "Indices an output deleted because they were older than retention_days",
                                             ("output",))
        self._retention_scope: anyio.CancelScope | None = None

    @property
    def client(self) -> AsyncElasticsearch:
        if self._client is None:
            from elasticsearch import AsyncElasticsearch

            self._client = AsyncElasticsearch(**client_options(self.config))
        return self._client

    async def start(self) -> None:
        try:
            await self.install_template()
        except TransientError as exc:  # the cluster is down: the first write installs it
            self.ctx.log.warning("elasticsearch template not installed yet; will retry before the first write",
                                 extra={"kv": {"output": self.label, "error": str(exc)}})

    async def install_template(self) -> None:
        if self._template_ok:
            return
        c = self.config
        body = index_template(c.index_prefix, shards=c.number_of_shards, replicas=c.number_of_replicas)
        meta = body.pop("_meta")
        from elasticsearch import ApiError, TransportError

        try:
            await self.client.indices.put_index_template(name=c.template_name, meta=meta, **body)
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise TransientError(f"index template {c.template_name!r}: {exc}") from exc
            raise ValueError(f"elasticsearch refused index template {c.template_name!r} "
                             f"for {c.index_prefix}*: {exc}") from exc
        except TransportError as exc:
            raise TransientError(f"elasticsearch unreachable at {', '.join(c.hosts)}: {exc}") from exc
        self._template_ok = True

    async def write(self, batch: Batch) -> None:
        if batch.signal is not Signal.LOGS or not batch.items:
            return
        await self.install_template()
        c = self.config
        if batch is self._retry_batch:  # the runner retries the same batch: send only what is left
            docs = self._retry_docs
        else:
            docs = prepare(batch.items, prefix=c.index_prefix, date_format=c.index_date_format,
                           content_ids=c.id_from_content)
        out = await bulk(self.client, docs, max_bytes=c.max_bulk_bytes, content_ids=c.id_from_content)
        if out.dead:
            path = await anyio.to_thread.run_sync(self.dead_letter.append, out.dead)
            self.m_dead.inc(len(out.dead), self.label)
            first = out.dead[0]
            self.ctx.log.error("elasticsearch refused documents; written to the dead-letter file",
                               extra={"kv": {"output": self.label, "documents": len(out.dead), "file": str(path),
                                             "status": first[1], "error": str(first[2])[:300]}})
        if out.retry:
            self._retry_batch, self._retry_docs = batch, out.retry
            raise transient(out, len(docs))
        self._retry_batch, self._retry_docs = None, []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Delete old indices at start and every retention_check_interval_secs, until shutdown."""
        if self.config.retention_days <= 0:
            task_status.started()
            return
        with anyio.CancelScope() as scope:
            self._retention_scope = scope  # shutdown() cancels it before closing the client
            task_status.started()
            while True:
                try:
                    await self.enforce_retention()
                except Exception as exc:  # a background task never stops the daemon: the next period retries
                    self.ctx.log.warning("elasticsearch retention failed; retrying next period",
                                         extra={"kv": {"output": self.label, "error": f"{type(exc).__name__}: {exc}",
                                                       "retry_in_secs": self.config.retention_check_interval_secs}})
                await anyio.sleep(self.config.retention_check_interval_secs)

    async def enforce_retention(self, now: float | None = None) -> list[str]:
        """Delete our indices (exactly ``<index_prefix><index_date_format>``) whose whole period ended
        retention_days or more before ``now`` (UTC seconds; default: the clock); return their names.
        Raises TransientError when the cluster cannot be reached or refuses (nothing is lost: the
        next call deletes what is left)."""
        c = self.config
        if c.retention_days <= 0:
            return []
        if now is None:
            now = self.ctx.clock.time_ns() / 1e9
        cutoff = now - c.retention_days * DAY_SECS
        from elasticsearch import ApiError, TransportError

        deleted: list[str] = []
        try:
            # _cat/indices lists concrete indices only (never aliases or data streams), closed ones too;
            # a pattern that matches nothing answers [].
            resp = await self.client.cat.indices(index=c.index_prefix + "*", format="json", h="index",
                                                 expand_wildcards="open,closed")
            rows = cast(list[dict[str, Any]], resp.body)  # format=json: a list, typed as text or object
            old = expired((row["index"] for row in rows), c.index_prefix, c.index_date_format, cutoff)
            for group in delete_groups(old):
                # Named one by one: Elasticsearch 8 refuses wildcards in DELETE (destructive_requires_name).
                # ignore_unavailable: an index deleted meanwhile (by ILM, another daemon) is not an error.
                await self.client.indices.delete(index=",".join(group), ignore_unavailable=True)
                deleted += group
        except (ApiError, TransportError) as exc:
            raise TransientError(f"deleting {c.index_prefix}* indices older than {c.retention_days} days "
                                 f"({len(deleted)} deleted so far): {type(exc).__name__}: {exc}") from exc
        finally:
            if deleted:
                self.m_deleted.inc(len(deleted), self.label)
                self.ctx.log.info("elasticsearch retention deleted old indices",
                                  extra={"kv": {"output": self.label, "indices": len(deleted),
                                                "first": deleted[0], "last": deleted[-1]}})
        return deleted

    def query_api(self, signal: Signal) -> Any | None:
        if signal is not Signal.LOGS:
            return None
        if self._store is None:
            from elasticsearch import Elasticsearch

            self._sync = Elasticsearch(**client_options(self.config))
            self._store = EsLogStore(self._sync, self.config.index_prefix)
        return self._store

    async def check(self) -> dict[str, Any]:
        """For /health/detailed: does the cluster answer, and in what state?"""
        from elasticsearch import ApiError, TransportError

        try:
            health = await self.client.cluster.health()
            return {"logs": {"reachable": True, "status": health.get("status", ""), "hosts": list(self.config.hosts),
                             "template_installed": self._template_ok}}
        except (ApiError, TransportError) as exc:
            return {"logs": {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}}

    async def shutdown(self) -> None:
        if self._retention_scope is not None:
            self._retention_scope.cancel()
            self._retention_scope = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._sync is not None:
            sync, self._sync = self._sync, None
            self._store = None
            await anyio.to_thread.run_sync(sync.close)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [ElasticsearchOutput]


plugin_class = ElasticsearchOutput
