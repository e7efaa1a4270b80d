"""The plugin contract, written down once.

Every plugin is a class with a ``kind``, a ``name`` and a typed ``Config``. The core builds it with
``Plugin(config, ctx)`` and then drives its lifecycle:

    start()      acquire resources (connections, files, sockets). Fail fast: an exception here stops
                 the daemon at start-up with the plugin's name in the message.
    run()        (optional) a long-running task, e.g. a UDP listener, a scraper loop, retention.
                 It calls ``task_status.started()`` once it is ready and returns when cancelled.
    shutdown()   flush what is pending and release resources. Safe without ``start()``, safe twice.

Errors after start-up never crash the daemon: outputs raise ``TransientError`` (retried with
jittered backoff) or ``PermanentError`` (never retried, counted); anything else is treated as
transient and logged once per batch, never once per record.

Config classes are msgspec Structs with ``forbid_unknown_fields``: a typo in a key is an error
that names the key. Defaults live in the Struct and nowhere else; ``validate()`` checks values
and raises ``ValueError`` quoting the bad value.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import msgspec
from anyio.abc import TaskStatus

from airisd.config import HttpConfig
from airisd.model import Batch, Signal

if TYPE_CHECKING:
    from airisd.selfmetrics import Registry


class PluginConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base for every plugin's config. Subclasses add fields with defaults and may override
    ``validate``."""

    def validate(self) -> None:
        """Raise ValueError naming the option and quoting the bad value."""


class Clock:
    """Wall and monotonic time, injectable so tests can use a fake clock."""

    def time_ns(self) -> int:
        import time

        return time.time_ns()

    def monotonic(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


Emit = Callable[[Batch], Awaitable[None]]


@dataclass
class PluginContext:
    """What the core hands every plugin."""

    data_dir: Path
    log: logging.Logger
    metrics: Registry
    emit: Emit  # inputs: submit a batch; returns once every output has accepted it durably
    clock: Clock = field(default_factory=Clock)
    settings: dict[str, Any] = field(default_factory=dict)  # the [agent] section, read-only


class Plugin:
    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    description: ClassVar[str] = ""

    def __init__(self, config: PluginConfig, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx

    async def start(self) -> None:
        """Acquire resources. See the module docstring for the contract."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Optional long-running task (listeners, scrapers, retention); it calls
        ``task_status.started()`` once ready and returns when cancelled."""
        task_status.started()

    async def shutdown(self) -> None:
        """Flush and release. Safe without start(), safe twice."""


@dataclass(frozen=True)
class Route:
    """An HTTP route an input serves on its role's listener."""

    method: str
    path: str
    endpoint: Callable[..., Awaitable[Any]]  # async (request) -> response
    name: str = ""
    scope: str = "write"  # the permission a caller needs: read, write or admin


class Input(Plugin):
    kind: ClassVar[str] = "input"
    role: ClassVar[str | None] = None  # the role whose listener serves routes(); None: no HTTP

    def routes(self) -> Sequence[Route]:
        return ()

    @property
    def max_body(self) -> int:
        """The listeners' request body limit (``[http] max_body_bytes``), for the routes' reads."""
        return int(self.ctx.settings.get("max_body_bytes", HttpConfig().max_body_bytes))


class Processor(Plugin):
    kind: ClassVar[str] = "processor"
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)

    def process(self, batch: Batch) -> Batch:
        """Return the batch to pass on (possibly with fewer or changed items). Must be cheap and
        synchronous: it runs on the request path."""
        return batch


class Output(Plugin):
    kind: ClassVar[str] = "output"
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    durable: ClassVar[bool] = False  # True: write() returns only once data is on disk (a store)

    def query_api(self, signal: Signal) -> Any | None:
        """A store that answers a role's queries returns its query object for that signal (see
        airisd.query); forwarding outputs return None."""
        return None

    async def write(self, batch: Batch) -> None:
        """Deliver one batch. Raise TransientError to be retried, PermanentError to drop it
        (counted and logged)."""
        raise NotImplementedError

    def prepare_ahead(self, batch: Batch) -> Any:
        """Optional: work on a batch that needs nothing but its items (encoding it, say), done on
        the event loop by the request that queues it, so that it overlaps the write in flight
        instead of delaying the next one. Must not raise; None means nothing was prepared."""
        return None

    async def write_prepared(self, batch: Batch, parts: list[Any]) -> None:
        """write(batch), given what prepare_ahead() returned for each batch merged into it, in order."""
        await self.write(batch)

    def writes_in_flight(self, signal: Signal) -> int:
        """How many write() calls for ``signal`` the runner may have outstanding at once (a durable
        output with a memory buffer only). More than 1 suits a backend that queues requests and
        serves them in order, such as the SQLite writer process: the next batch is already waiting
        when a commit ends. Batches may then be stored in a different order than taken (a retried
        one after the next), which concurrent requests never promised anyway."""
        return 1


class AlertChannel(Plugin):
    """A notification channel (email, slack, webhook, sms). Its Config is the channel's ``config``
    object as posted to ``/channels``; ``validate()`` rejects it with a message naming the field."""

    kind: ClassVar[str] = "alerting"

    async def send(self, notification: Any) -> None:
        """Deliver one notification. Raise TransientError to be retried with backoff,
        PermanentError otherwise."""
        raise NotImplementedError


KINDS = ("input", "processor", "output", "alerting")
