"""The ``file`` output: every record as one JSON line in a file, as Telegraf's ``file`` output.

For operators who want to see what a pipeline emits, and a real, simple forwarding output for
end-to-end tests of buffers. Each write appends its lines and fsyncs before returning, so a record
the runner counts as sent is on disk. The file is opened for each write: a path that becomes
unwritable (its directory removed, replaced, full disk) fails that write with TransientError, the
runner retries with backoff, and delivery resumes once the path works again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import msgspec

from airisd.errors import TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.pipeline import OutputConfig
from airisd.plugin import Output, Plugin

DEFAULT_FILE = "output-file.jsonl"


class FileConfig(OutputConfig):
    ## The file to append to; empty: output-file.jsonl in the agent's data_dir.
    path: str = ""
    ## "json": one JSON object per record, with a "signal" key (metrics, logs or traces).
    format: str = "json"
    ## Rename the file to <path>.<UTC time> once it is larger than this (0: never rotate).
    rotate_max_bytes: int = 0

    def validate(self) -> None:
        super().validate()
        if self.format != "json":
            raise ValueError(f"format must be 'json', got {self.format!r}")
        if self.rotate_max_bytes < 0:
            raise ValueError(f"rotate_max_bytes must be >= 0, got {self.rotate_max_bytes!r}")


class FileOutput(Output):
    name: ClassVar[str] = "file"
    Config: ClassVar[type[FileConfig]] = FileConfig
    description: ClassVar[str] = "Records as JSON lines appended to a file (fsync'ed), for debugging pipelines"
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    config: FileConfig

    def __init__(self, config: FileConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.path = Path(config.path) if config.path else Path(ctx.data_dir) / DEFAULT_FILE
        self._encoder = msgspec.json.Encoder()
        self._lock = anyio.Lock()  # one output serves several signals: keep lines of a write together

    async def start(self) -> None:
        await anyio.to_thread.run_sync(lambda: self.path.parent.mkdir(parents=True, exist_ok=True))

    def lines(self, batch: Batch) -> bytes:
        head = b'{"signal":"' + batch.signal.value.encode() + b'",'
        return b"".join(head + self._encoder.encode(item)[1:] + b"\n" for item in batch.items)

    async def write(self, batch: Batch) -> None:
        data = self.lines(batch)
        async with self._lock:
            try:
                await anyio.to_thread.run_sync(self._append, data)
            except OSError as exc:
                raise TransientError(f"file {self.path}: {exc.strerror or exc}") from exc

    def _append(self, data: bytes) -> None:
        if self.config.rotate_max_bytes:
            try:
                if self.path.stat().st_size + len(data) > self.config.rotate_max_bytes:
                    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}"
                    os.rename(self.path, self.path.with_name(f"{self.path.name}.{stamp}"))
            except FileNotFoundError:
                pass
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [FileOutput]


plugin_class = FileOutput
