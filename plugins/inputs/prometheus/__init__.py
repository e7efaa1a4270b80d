"""Scrape Prometheus /metrics endpoints on an interval, as Telegraf's prometheus input does.

Each target's samples become points with the sample's name and labels plus ``instance``
(the URL's host:port) and ``job`` (when configured); a sample label of the same name is kept as
``exported_instance`` / ``exported_job``, as Prometheus does. A sample without a timestamp gets
the scrape's start time. NaN and infinite values cannot be stored and are skipped. Every scrape
also writes ``up`` (1 or 0), ``scrape_duration_seconds`` and ``scrape_samples_scraped`` for the
target, so a failing target is visible in queries; the failure is also logged when the target's
state changes and shown by ``/health/detailed``. One failing target never stops the others.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import httpx
from airisd_plugins.inputs.prometheus.textformat import TextError, parse
from anyio.abc import TaskStatus

from airisd.errors import AirisError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Point, Signal
from airisd.plugin import Input, Plugin, PluginConfig
from airisd.timeparse import MAX_TS_NS

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
RESERVED = ("instance", "job")


class PrometheusConfig(PluginConfig):
    ## Targets to scrape, e.g. ["http://127.0.0.1:9100/metrics"].
    urls: list[str] = []
    ## How often to scrape every target, and how long one scrape may take.
    interval_secs: float = 15.0
    timeout_secs: float = 10.0
    ## The job label put on every point (empty: none).
    job: str = ""
    ## Sent as Authorization: Bearer <token> (empty: no header).
    bearer_token: str = ""
    ## More request headers.
    headers: dict[str, str] = {}
    ## Largest body accepted from a target, and the most points sent downstream in one batch.
    max_body_bytes: int = 50 * 1024 * 1024
    max_batch_points: int = 5000

    def validate(self) -> None:
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"urls: {url!r} is not an http(s) URL with a host")
        if not self.interval_secs > 0:
            raise ValueError(f"interval_secs must be positive, got {self.interval_secs}")
        if not 0 < self.timeout_secs <= self.interval_secs:
            raise ValueError(
                f"timeout_secs must be positive and at most interval_secs, got {self.timeout_secs}"
            )
        if self.max_body_bytes < 1 or self.max_batch_points < 1:
            raise ValueError("max_body_bytes and max_batch_points must be at least 1")


class ScrapeFailed(Exception):
    pass


class TargetState:
    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.instance = f"{parts.hostname}:{port}"
        self.up: bool | None = None
        self.last_error = ""
        self.last_scrape_ns = 0
        self.samples = 0


def samples_to_points(text: str, *, now_ns: int, target: dict[str, str]) -> tuple[list[Point], int, str]:
    """(points, lines refused or skipped, first problem) for one exposition body."""
    points: list[Point] = []
    bad = 0
    first = ""
    for item in parse(text):
        if isinstance(item, TextError):
            bad += 1
            first = first or str(item)
            continue
        value = item.value
        if value != value or value in (float("inf"), float("-inf")):
            bad += 1
            continue
        labels = item.labels
        for key in RESERVED:
            if key in labels and key in target:
                labels["exported_" + key] = labels.pop(key)
        labels.update(target)
        if item.timestamp_ms is None:
            ts = now_ns
        else:
            ts = item.timestamp_ms * 1_000_000
            if not 0 <= ts <= MAX_TS_NS:
                bad += 1
                first = first or f"{item.name}: timestamp {item.timestamp_ms} out of range"
                continue
        points.append(Point(name=item.name, value=value, ts=ts, labels=labels))
    return points, bad, first


class PrometheusInput(Input):
    name: ClassVar[str] = "prometheus"
    role: ClassVar[str | None] = "metrics"
    Config: ClassVar[type[PrometheusConfig]] = PrometheusConfig
    description: ClassVar[str] = "Scrape Prometheus /metrics endpoints on an interval"
    config: PrometheusConfig
    transport: httpx.AsyncBaseTransport | None = None  # tests inject httpx.MockTransport

    def __init__(self, config: PrometheusConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.targets = [TargetState(u) for u in config.urls]
        self.client: httpx.AsyncClient | None = None
        self.m_scrapes = ctx.metrics.counter(
            "scrapes_total", "Scrapes by target and result", ("url", "result")
        )
        self.m_ingested = ctx.metrics.counter("points_ingested_total", "Metric points accepted", ("input",))
        self.m_rejected = ctx.metrics.counter(
            "points_rejected_total", "Metric points refused, by reason", ("input", "reason")
        )

    async def start(self) -> None:
        headers = {"Accept": ACCEPT, "User-Agent": "airisd-prometheus-input", **self.config.headers}
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        self.client = httpx.AsyncClient(
            timeout=self.config.timeout_secs, headers=headers, transport=self.transport, follow_redirects=True
        )

    async def shutdown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def check(self) -> dict[str, Any]:
        """For /health/detailed: each target's state (a down target does not degrade the daemon)."""
        return {t.url: {"up": t.up, "last_error": t.last_error, "samples": t.samples} for t in self.targets}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.targets:
            return
        clock = self.ctx.clock
        while True:
            started = clock.monotonic()
            async with anyio.create_task_group() as tg:
                for target in self.targets:
                    tg.start_soon(self.scrape, target)
            await anyio.lowlevel.checkpoint()
            await clock.sleep(max(0.0, self.config.interval_secs - (clock.monotonic() - started)))

    async def _fetch(self, url: str) -> str:
        assert self.client is not None
        async with self.client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise ScrapeFailed(f"HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    raise ScrapeFailed(f"body larger than max_body_bytes ({self.config.max_body_bytes})")
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    async def scrape(self, target: TargetState) -> None:
        """One scrape of one target: never raises (a failure is recorded and reported)."""
        if self.client is None:
            return
        now = self.ctx.clock.time_ns()
        t0 = time.perf_counter()
        labels = {"instance": target.instance}
        if self.config.job:
            labels["job"] = self.config.job
        points: list[Point] = []
        error = ""
        try:
            with anyio.fail_after(self.config.timeout_secs):
                text = await self._fetch(target.url)
            points, bad, first = samples_to_points(text, now_ns=now, target=labels)
            if bad:
                self.m_rejected.inc(bad, self.name, "invalid_sample")
                if first and first != target.last_error:
                    self.ctx.log.warning(
                        "scrape: some lines refused",
                        extra={"kv": {"url": target.url, "refused": bad, "first": first}},
                    )
        except TimeoutError:
            error = f"timed out after {self.config.timeout_secs} s"
        except (httpx.HTTPError, ScrapeFailed, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ScrapeFailed) else str(exc)
        up = not error
        if up != target.up:
            if up:
                self.ctx.log.info("scrape target is up", extra={"kv": {"url": target.url}})
            else:
                self.ctx.log.warning(
                    "scrape target is down", extra={"kv": {"url": target.url, "error": error}}
                )
        target.up, target.last_error, target.last_scrape_ns = up, error, now
        target.samples = len(points)
        self.m_scrapes.inc(1, target.url, "ok" if up else "error")
        duration = time.perf_counter() - t0
        points += [
            Point(name="up", value=1.0 if up else 0.0, ts=now, labels=dict(labels)),
            Point(name="scrape_duration_seconds", value=duration, ts=now, labels=dict(labels)),
            Point(name="scrape_samples_scraped", value=float(len(points)), ts=now, labels=dict(labels)),
        ]
        step = self.config.max_batch_points
        for i in range(0, len(points), step):
            chunk = points[i : i + step]
            try:
                await self.ctx.emit(Batch(Signal.METRICS, chunk))
            except AirisError as exc:  # queues full or shutting down: this scrape is lost, say so
                self.m_rejected.inc(len(points) - i, self.name, "backpressure")
                self.ctx.log.warning(
                    "scrape not stored", extra={"kv": {"url": target.url, "error": exc.message}}
                )
                return
            self.m_ingested.inc(len(chunk), self.name)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [PrometheusInput]


plugin_class = PrometheusInput
