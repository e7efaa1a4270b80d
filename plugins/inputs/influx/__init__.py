"""InfluxDB line protocol writes: POST /write (1.x) and POST /api/v2/write (2.x), answered as
InfluxDB answers, so Telegraf's influxdb and influxdb_v2 outputs can point at airisd.

Mapping (the Telegraf / VictoriaMetrics convention): each field of a line is one point named
``<measurement>_<field>``; tags are labels; ``db`` (1.x) or ``bucket`` (2.x) becomes the label
``db`` unless the line has a ``db`` tag. Floats, integers and unsigned integers are stored as
floats, booleans as 1 and 0; string fields are not numbers and are skipped (counted in
``airisd_points_rejected_total{reason="string_field"}``). A missing timestamp is the time the
request arrived.

Errors: a line that does not parse does not stop the others (InfluxDB's partial write): the valid
lines are stored and the answer is 400 ``{"code": "invalid", "message": "..."}`` naming the first
bad line and counting the rest (1.x answers also carry ``"error"``, which 1.x clients read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qs

import orjson
from airisd_plugins.inputs.influx.lineproto import Line, LineError, parse
from airisd_plugins.inputs.prometheus_remote_write.shared import MetricLimits, MetricLimitsConfig
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, Backpressure, PayloadTooLarge, ValidationError
from airisd.hookspecs import hookimpl
from airisd.http.request import read_body
from airisd.model import Batch, Point, Signal
from airisd.plugin import Input, Plugin, Route
from airisd.timeparse import MAX_TS_NS

PRECISION_V1 = {
    "n": 1,
    "ns": 1,
    "u": 1_000,
    "us": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
PRECISION_V2 = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
VERSION = "1.8.10"  # what /ping reports: the 1.x API we speak


class InfluxConfig(MetricLimitsConfig):
    ## Between measurement and field in point names: cpu + usage_idle -> cpu_usage_idle.
    separator: str = "_"
    ## The label that carries ?db= (1.x) or ?bucket= (2.x); empty: none.
    db_label: str = "db"


def lines_to_points(
    lines: list[Line], *, mult: int, now_ns: int, separator: str, extra: dict[str, str]
) -> tuple[list[Point], int]:
    """Points of parsed lines; the second value counts string fields skipped. Raises ValueError
    for a timestamp out of range (the caller names the line)."""
    decoded = Decoded()
    for line in lines:
        problem = decoded.add(line, mult=mult, now_ns=now_ns, separator=separator, extra=extra, limits=None)
        if problem is not None:
            raise ValueError(problem)
    return decoded.points, decoded.strings


class Decoded:
    """Points of one request, built line by line. Lines of one series share their tags dict (see
    lineproto.parse), so the merged labels and their limit check are computed once per series."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.strings = 0
        self._labels: dict[int, tuple[dict[str, str], dict[str, str], str | None]] = {}
        self._names: dict[tuple[str, str], str | None] = {}

    def add(
        self,
        line: Line,
        *,
        mult: int,
        now_ns: int,
        separator: str,
        extra: dict[str, str],
        limits: MetricLimits | None,
    ) -> str | None:
        """Add a line's points, or return why the line is refused (nothing added)."""
        if line.timestamp is None:
            ts = now_ns
        else:
            ts = line.timestamp * mult
            if not 0 <= ts <= MAX_TS_NS:
                return f"timestamp {line.timestamp} is out of range for the precision"
        cached = self._labels.get(id(line.tags))
        if cached is None or cached[0] is not line.tags:
            labels = {**extra, **line.tags} if extra else line.tags
            problem = None
            if limits is not None:
                problem = limits.problem(Point(name="x", value=0.0, ts=0, labels=labels))
            cached = self._labels[id(line.tags)] = (line.tags, labels, problem)
        _, labels, problem = cached
        if problem is not None:
            return problem
        new: list[Point] = []
        for key, value in line.fields.items():
            if isinstance(value, str):
                self.strings += 1
                continue
            name = line.measurement + separator + key
            if limits is not None:
                name_problem = self._names.get((line.measurement, key), "")
                if name_problem == "":
                    name_problem = self._names[(line.measurement, key)] = limits.problem(
                        Point(name=name, value=0.0, ts=0)
                    )
                if name_problem is not None:
                    return name_problem
            new.append(Point(name=name, value=float(value), ts=ts, labels=labels))
        self.points += new
        return None


def influx_error(
    status: int, code: str, message: str, *, v1: bool, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if v1:
        body["error"] = message
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class InfluxInput(Input):
    name: ClassVar[str] = "influx"
    role: ClassVar[str | None] = "metrics"
    Config: ClassVar[type[InfluxConfig]] = InfluxConfig
    description: ClassVar[str] = "InfluxDB line protocol: POST /write (1.x) and /api/v2/write (2.x), 204"
    config: InfluxConfig

    def __init__(self, config: InfluxConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.limits = config.metric_limits()
        self.m_rejected = ctx.metrics.counter(
            "points_rejected_total", "Metric points refused, by reason", ("input", "reason")
        )
        self.m_ingested = ctx.metrics.counter("points_ingested_total", "Metric points accepted", ("input",))

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/write", self.write_v1, name="influx_write", scope="write"),
            Route("POST", "/api/v2/write", self.write_v2, name="influx_write_v2", scope="write"),
            Route("POST", "/query", self.query_v1, name="influx_query", scope="write"),
            Route("GET", "/ping", self.ping, name="influx_ping", scope="public"),
            Route("HEAD", "/ping", self.ping, name="influx_ping_head", scope="public"),
        )

    async def ping(self, request: Request) -> Response:
        return Response(status_code=204, headers={"X-Influxdb-Version": VERSION, "X-Influxdb-Build": "OSS"})

    async def query_v1(self, request: Request) -> Response:
        """Telegraf's 1.x output sends ``CREATE DATABASE`` at start: say yes (databases are labels
        here); any other InfluxQL is not served."""
        q = request.query_params.get("q", "")
        if not q:  # Telegraf posts it as a form body
            try:
                form = parse_qs((await read_body(request, 64 * 1024)).decode("utf-8", "replace"))
            except AirisError as exc:
                return influx_error(400, "invalid", exc.message, v1=True)
            q = (form.get("q") or [""])[0]
        if q.strip().upper().startswith("CREATE DATABASE"):
            return Response(orjson.dumps({"results": [{"statement_id": 0}]}), media_type="application/json")
        return influx_error(
            400, "invalid", "airisd accepts writes only; query with GET /metrics/query", v1=True
        )

    async def write_v1(self, request: Request) -> Response:
        q = request.query_params
        return await self._write(
            request, precision=q.get("precision") or "ns", table=PRECISION_V1, db=q.get("db", ""), v1=True
        )

    async def write_v2(self, request: Request) -> Response:
        q = request.query_params
        bucket = q.get("bucket", "")
        if not bucket:
            return influx_error(400, "invalid", "bucket is required (query parameter 'bucket')", v1=False)
        return await self._write(
            request, precision=q.get("precision") or "ns", table=PRECISION_V2, db=bucket, v1=False
        )

    async def _write(
        self, request: Request, *, precision: str, table: dict[str, int], db: str, v1: bool
    ) -> Response:
        mult = table.get(precision)
        if mult is None:
            return influx_error(
                400, "invalid", f"invalid precision {precision[:20]!r}; use one of {', '.join(table)}", v1=v1
            )
        try:
            body = await read_body(request, self.max_body)
        except PayloadTooLarge as exc:
            return influx_error(413, "request too large", exc.message, v1=v1)
        except AirisError as exc:
            return influx_error(400 if exc.status >= 500 else exc.status, "invalid", exc.message, v1=v1)
        text = body.decode("utf-8", errors="replace")
        now = self.ctx.clock.time_ns()
        extra = {self.config.db_label: db} if db and self.config.db_label else {}
        decoded = Decoded()
        errors: list[str] = []
        for item in parse(text):
            if isinstance(item, LineError):
                errors.append(str(item))
                continue
            problem = decoded.add(
                item, mult=mult, now_ns=now, separator=self.config.separator, extra=extra, limits=self.limits
            )
            if problem is not None:
                errors.append(f"invalid line for measurement '{item.measurement[:100]}': {problem}")
        points, strings = decoded.points, decoded.strings
        if strings:
            self.m_rejected.inc(strings, self.name, "string_field")
        if points:
            try:
                await self.ctx.emit(Batch(Signal.METRICS, points))
            except Backpressure as exc:
                return influx_error(
                    503,
                    "unavailable",
                    exc.message,
                    v1=v1,
                    headers={"Retry-After": str(max(1, exc.retry_after_secs))},
                )
            except ValidationError as exc:
                return influx_error(400, "invalid", exc.message, v1=v1)
            except AirisError as exc:
                return influx_error(503, "unavailable", exc.message, v1=v1)
            self.m_ingested.inc(len(points), self.name)
        if errors:
            self.m_rejected.inc(len(errors), self.name, "invalid_line")
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            prefix = "partial write: " if points else ""
            return influx_error(400, "invalid", f"{prefix}{errors[0]}{more}", v1=v1)
        return Response(status_code=204, headers={"X-Influxdb-Version": VERSION})


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [InfluxInput]


plugin_class = InfluxInput
