"""jsonl_file: an output that appends every record to a file as one JSON object per line.

It shows the parts every output has: a Config that subclasses ``OutputConfig`` (batching, queue and
retry options come with it), resources opened in ``start()`` and released in ``shutdown()`` (safe
without start, safe twice), blocking file I/O moved off the event loop, and the error policy:
``TransientError`` for what may pass (disk full, I/O error: the pipeline retries with backoff),
``PermanentError`` for what cannot (permission denied, a directory in the way: the batch is dropped
and counted).
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import IO, Any, ClassVar

import anyio
import msgspec

from airisd.errors import PermanentError, TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch
from airisd.pipeline import OutputConfig
from airisd.plugin import Output, Plugin, PluginConfig

TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.EDQUOT, errno.EINTR}


class JsonlFileConfig(OutputConfig):
    """Options of [[outputs.jsonl_file]], plus every output's batch_size, flush_interval_secs, ..."""

    path: str = "records.jsonl"  # relative to the agent's data_dir
    fsync: bool = False  # true: each batch reaches the disk before write() returns

    def validate(self) -> None:
        super().validate()
        if not self.path or self.path.endswith("/"):
            raise ValueError(f"path must name a file, got {self.path!r}")


class JsonlFileOutput(Output):
    name: ClassVar[str] = "jsonl_file"
    Config: ClassVar[type[PluginConfig]] = JsonlFileConfig
    description: ClassVar[str] = "Example: append every record to a file as JSON lines"
    config: JsonlFileConfig

    def __init__(self, config: JsonlFileConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        path = Path(config.path)
        self.path = path if path.is_absolute() else Path(ctx.data_dir) / path
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()  # write() runs in a worker thread; shutdown may race it
        self._encoder = msgspec.json.Encoder()
        self.m_bytes = ctx.metrics.counter("jsonl_file_bytes_total", "Bytes appended by jsonl_file", ())

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")  # fail fast: a bad path stops the daemon at start-up

    async def write(self, batch: Batch) -> None:
        if self._file is None:
            raise PermanentError(f"jsonl_file {self.path}: written before start() or after shutdown()")
        lines = b"".join(self._encode(batch.signal.value, item) for item in batch.items)
        try:
            await anyio.to_thread.run_sync(self._append, lines)
        except OSError as exc:
            message = f"jsonl_file {self.path}: {exc.strerror or exc}"
            if exc.errno in TRANSIENT_ERRNOS:
                raise TransientError(message) from exc
            raise PermanentError(message) from exc
        self.m_bytes.inc(len(lines))

    def _encode(self, signal: str, item: Any) -> bytes:
        return self._encoder.encode({"signal": signal, **msgspec.to_builtins(item)}) + b"\n"

    def _append(self, data: bytes) -> None:
        with self._lock:
            f = self._file
            if f is None:
                raise OSError(errno.EBADF, "file closed")
            f.write(data)
            f.flush()
            if self.config.fsync:
                os.fsync(f.fileno())

    async def shutdown(self) -> None:
        with self._lock:
            f, self._file = self._file, None
        if f is not None:
            f.flush()
            f.close()


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [JsonlFileOutput]
