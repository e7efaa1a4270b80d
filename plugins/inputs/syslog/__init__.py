"""A syslog listener on the log role: RFC 5424 and RFC 3164 over UDP and TCP (octet-counted and
newline framing), so rsyslog, syslog-ng, network devices and ``logger`` can send to airisd.

Records go downstream in small batches: when ``batch_size`` are waiting or ``flush_interval_secs``
after the first, whichever comes first. While the pipeline refuses (queues full) the batch is
retried with backoff and TCP senders are slowed by TCP itself (the listener stops reading once
``max_buffered_records`` wait); UDP has no such brake, so datagrams arriving while the buffer is
full are dropped and counted in ``airisd_syslog_dropped_total``. The message mapping is in parse.py.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.abc
import msgspec
from airisd_plugins.inputs.syslog.parse import TcpFramer, parse_message
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from airisd.config import parse_address
from airisd.errors import AirisError, ConfigError
from airisd.hookspecs import hookimpl
from airisd.logparse import MAX_MESSAGE_BYTES
from airisd.model import Batch, LogRecord, Signal
from airisd.plugin import Input, Plugin, PluginConfig


class SyslogConfig(PluginConfig):
    ## HOST:PORT for both UDP and TCP. 514 needs root; 5514 does not.
    address: str = "127.0.0.1:5514"
    ## Which transports to listen on: "udp", "tcp" or both.
    transports: list[str] = msgspec.field(default_factory=lambda: ["udp", "tcp"])
    ## Longer messages are cut here and flagged syslog.truncated = true.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    ## Batching: send when this many records wait, or this long after the first.
    batch_size: int = 1000
    flush_interval_secs: float = 0.1
    ## Records waiting for the pipeline before TCP reading pauses and UDP datagrams are dropped.
    max_buffered_records: int = 10_000

    def validate(self) -> None:
        try:
            parse_address(self.address, where="address")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if not self.transports or any(t not in ("udp", "tcp") for t in self.transports):
            raise ValueError(
                f"transports must be a non-empty list of 'udp' and 'tcp', got {self.transports!r}"
            )
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(
                f"max_message_bytes must be 1 to {MAX_MESSAGE_BYTES}, got {self.max_message_bytes}"
            )
        if self.batch_size < 1 or self.max_buffered_records < self.batch_size:
            raise ValueError("batch_size must be at least 1 and at most max_buffered_records")
        if not 0 < self.flush_interval_secs <= 10:
            raise ValueError(f"flush_interval_secs must be in (0, 10], got {self.flush_interval_secs}")


class SyslogInput(Input):
    name: ClassVar[str] = "syslog"
    role: ClassVar[str | None] = "log"
    Config: ClassVar[type[SyslogConfig]] = SyslogConfig
    description: ClassVar[str] = "Syslog listener: RFC 5424 and 3164 over UDP and TCP"
    config: SyslogConfig

    def __init__(self, config: SyslogConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.udp: anyio.abc.UDPSocket | None = None
        self.tcp: anyio.abc.Listener[Any] | None = None
        self.udp_port = 0
        self.tcp_port = 0
        self.m_received = ctx.metrics.counter(
            "syslog_messages_total", "Syslog messages received", ("transport",)
        )
        self.m_dropped = ctx.metrics.counter(
            "syslog_dropped_total", "UDP syslog messages dropped because the buffer was full", ()
        )
        self.m_ingested = ctx.metrics.counter("logs_ingested_total", "Log records accepted", ("input",))
        self._send: MemoryObjectSendStream[LogRecord] | None = None
        self._receive: MemoryObjectReceiveStream[LogRecord] | None = None
        self._drained = anyio.Event()  # set when the flusher has emitted everything buffered
        self._flusher_running = False

    async def start(self) -> None:
        """Bind now, so a busy port stops the daemon at start-up with the address in the message."""
        host, port = parse_address(self.config.address, where="address")
        try:
            if "udp" in self.config.transports:
                self.udp = await anyio.create_udp_socket(local_host=host, local_port=port)
                self.udp_port = self.udp.extra(anyio.abc.SocketAttribute.local_port)
            if "tcp" in self.config.transports:
                self.tcp = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
                self.tcp_port = self.tcp.extra(anyio.abc.SocketAttribute.local_port)
        except OSError as exc:
            await self.shutdown()
            raise ConfigError(
                f"syslog cannot listen on {self.config.address}: {exc.strerror or exc} "
                "(set [[inputs.syslog]] address, or AIRISD_SYSLOG_ADDRESS in the default config)"
            ) from None
        self._send, self._receive = anyio.create_memory_object_stream[LogRecord](
            self.config.max_buffered_records
        )

    async def shutdown(self) -> None:
        """Stop listening, then let the flusher hand what is buffered to the pipeline (the daemon
        shuts inputs down while the pipeline still accepts) before closing the buffer."""
        udp, self.udp = self.udp, None
        tcp, self.tcp = self.tcp, None
        if udp is not None:
            await udp.aclose()
        if tcp is not None:
            await tcp.aclose()
        if self._send is not None:
            self._send.close()
            if self._flusher_running:
                with anyio.move_on_after(5):
                    await self._drained.wait()
        if self._receive is not None:
            self._receive.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self._receive is None:
            task_status.started()
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._flusher, self._receive)
            if self.udp is not None:
                tg.start_soon(self._serve_udp, self.udp)
            if self.tcp is not None:
                tg.start_soon(self.tcp.serve, self._serve_tcp_conn)
            task_status.started()

    async def _serve_udp(self, udp: anyio.abc.UDPSocket) -> None:
        assert self._send is not None
        send = self._send
        clock = self.ctx.clock
        limit = self.config.max_message_bytes
        try:
            async for data, (host, _port) in udp:
                self.m_received.inc(1, "udp")
                record = parse_message(data, received_ns=clock.time_ns(), peer=host, max_bytes=limit)
                try:
                    send.send_nowait(record)
                except anyio.WouldBlock:
                    self.m_dropped.inc(1)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    async def _serve_tcp_conn(self, conn: anyio.abc.SocketStream) -> None:
        assert self._send is not None
        send = self._send
        clock = self.ctx.clock
        framer = TcpFramer(self.config.max_message_bytes)
        try:
            peer = str(conn.extra(anyio.abc.SocketAttribute.remote_address)[0])
        except (OSError, TypeError, IndexError):
            peer = ""
        async with conn:
            while True:
                try:
                    data = await conn.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    frames = framer.close()
                    data = b""
                else:
                    frames = framer.feed(data)
                for frame, cut in frames:
                    self.m_received.inc(1, "tcp")
                    try:
                        await send.send(
                            parse_message(
                                frame,
                                received_ns=clock.time_ns(),
                                peer=peer,
                                truncated=cut,
                                max_bytes=self.config.max_message_bytes,
                            )
                        )
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return
                if not data:
                    return

    async def _flusher(self, receive: MemoryObjectReceiveStream[LogRecord]) -> None:
        size = self.config.batch_size
        self._flusher_running = True
        try:
            ended = False
            while not ended:
                try:
                    batch = [await receive.receive()]
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                with anyio.move_on_after(self.config.flush_interval_secs):
                    while len(batch) < size:
                        try:
                            batch.append(receive.receive_nowait())
                        except anyio.WouldBlock:
                            try:
                                batch.append(await receive.receive())
                            except (anyio.EndOfStream, anyio.ClosedResourceError):
                                ended = True  # emit what was collected, then stop
                                break
                await self._emit(batch)
        finally:
            self._flusher_running = False
            self._drained.set()

    async def _emit(self, batch: list[LogRecord]) -> None:
        """Deliver one batch, retrying with backoff while the pipeline refuses (never dropping)."""
        delay = 0.05
        warned = False
        while True:
            try:
                await self.ctx.emit(Batch(Signal.LOGS, batch))
            except AirisError as exc:
                if not warned:
                    self.ctx.log.warning(
                        "syslog batch waiting for the pipeline",
                        extra={"kv": {"records": len(batch), "error": exc.message}},
                    )
                    warned = True
                await self.ctx.clock.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.m_ingested.inc(len(batch), self.name)
            return


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [SyslogInput]


plugin_class = SyslogInput
