"""The ``redis`` output: every record XADDed to a Redis stream per signal (``airisd:metrics``,
``airisd:logs``, ``airisd:traces``), one pipeline per batch, optionally trimmed with
``MAXLEN ~``. Consumers read the streams with XREAD / XREADGROUP.

``method = "script"`` sends each chunk of up to ``script_chunk`` records as one EVALSHA whose Lua
loop does the XADDs inside Redis (the entries msgpack-encoded in its arguments): the same entries,
several times the throughput (redis-py packs and parses every pipelined command in Python), each
chunk all-or-nothing; Redis runs nothing else while a chunk is added (about 1 ms per 100 records).

``write()`` returns once Redis has answered every XADD of the batch; a lost connection or a
server that is loading, read-only or out of memory is a TransientError, so the runner retries the
batch from its buffer (at least once: a batch cut off half-way is written again whole, so a
failure can duplicate at most one batch). Other Redis errors (a key of the wrong type) are
permanent.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

import msgspec
from airisd_plugins.outputs.redis import codec

from airisd.errors import PermanentError, TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.pipeline import OutputConfig
from airisd.plugin import Output, Plugin

# Redis error replies that clear up on their own: retry them.
TRANSIENT_REPLIES = ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "NOREPLICAS")
METHODS = ("pipeline", "script")

# KEYS[1] the stream; ARGV[1] MAXLEN (0: none), ARGV[2] "~" or "="; then one msgpack array of
# field, value, field, value... per entry.
XADD_SCRIPT = """
local stream, maxlen, how = KEYS[1], tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV do
  if maxlen > 0 then
    redis.call('XADD', stream, 'MAXLEN', how, maxlen, '*', unpack(cmsgpack.unpack(ARGV[i])))
  else
    redis.call('XADD', stream, '*', unpack(cmsgpack.unpack(ARGV[i])))
  end
end
return #ARGV - 2
"""
_msgpack = msgspec.msgpack.Encoder()


class RedisOutputConfig(OutputConfig):
    ## redis[s]://[:password@]host:port/db; empty: built from host, port, password and db below
    ## (the sample reads the seed's REDIS_HOST, REDIS_PORT and REDIS_PASSWORD).
    url: str = ""
    host: str = "127.0.0.1"
    port: int = 6379
    password: str = ""
    db: int = 0
    ## Stream of each signal: stream_prefix + "metrics" | "logs" | "traces".
    stream_prefix: str = "airisd:"
    ## "fields": one stream field per record field; "json": one field "data" with the record as JSON.
    format: str = "fields"
    ## Trim each stream to about this many entries (0: never trim).
    max_len: int = 0
    ## Trim with MAXLEN ~ (whole macro nodes: much cheaper, keeps a few more than max_len).
    approximate_trim: bool = True
    ## "pipeline": one XADD command per record, pipelined per batch; "script": one Lua call per
    ## script_chunk records, which loops over XADD inside Redis (needs EVAL; several times faster).
    method: str = "pipeline"
    script_chunk: int = 1000
    timeout_secs: float = 10.0

    def validate(self) -> None:
        super().validate()
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {_no_password(self.url)!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be a TCP port, got {self.port!r}")
        if self.format not in codec.FORMATS:
            raise ValueError(f"format must be one of {', '.join(codec.FORMATS)}, got {self.format!r}")
        if self.max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {self.max_len!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 1 <= self.script_chunk <= 100_000:
            raise ValueError(f"script_chunk must be between 1 and 100000, got {self.script_chunk!r}")
        if not self.timeout_secs > 0:
            raise ValueError(f"timeout_secs must be positive, got {self.timeout_secs!r}")

    @property
    def redis_url(self) -> str:
        if self.url:
            return self.url
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


class RedisOutput(Output):
    name: ClassVar[str] = "redis"
    Config: ClassVar[type[RedisOutputConfig]] = RedisOutputConfig
    description: ClassVar[str] = "Append metrics, logs and traces to Redis streams (XADD, pipelined, MAXLEN ~)"
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    config: RedisOutputConfig

    def __init__(self, config: RedisOutputConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.streams = {sig: config.stream_prefix + sig.value for sig in Signal}
        self.where = _no_password(config.redis_url)
        self._client: Any = None  # redis.asyncio.Redis, imported in start()
        self._script: Any = None

    async def start(self) -> None:
        """Create the client; it connects on the first write, so the daemon starts while Redis is down."""
        import redis.asyncio as aioredis  # here: loading the plugin must not load the client library

        if self._client is None:
            t = self.config.timeout_secs
            self._client = aioredis.Redis.from_url(
                self.config.redis_url, socket_timeout=t, socket_connect_timeout=t
            )
            self._script = self._client.register_script(XADD_SCRIPT)  # EVALSHA, loaded again when missing

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def write(self, batch: Batch) -> None:
        if not batch.items:
            return
        if self._client is None:
            await self.start()
        assert self._client is not None
        c = self.config
        stream = self.streams[batch.signal]
        maxlen = c.max_len or None
        approximate = c.approximate_trim
        fmt = c.format
        pipe = self._client.pipeline(transaction=False)
        if c.method == "script":
            trim = [c.max_len, "~" if approximate else "="]
            for i in range(0, len(batch.items), c.script_chunk):
                entries = [_msgpack.encode([x for kv in codec.encode(r, fmt).items() for x in kv])
                           for r in batch.items[i:i + c.script_chunk]]
                await self._script(keys=[stream], args=[*trim, *entries], client=pipe)  # queued
        else:
            for record in batch.items:
                pipe.xadd(stream, codec.encode(record, fmt), maxlen=maxlen, approximate=approximate)  # type: ignore[arg-type]
        import redis.exceptions as rexc

        try:
            await pipe.execute()
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            raise TransientError(f"redis {self.where}: {type(exc).__name__}: {exc}") from None
        except rexc.ResponseError as exc:
            text = str(exc)
            if text.startswith(TRANSIENT_REPLIES) or isinstance(exc, rexc.BusyLoadingError):
                raise TransientError(f"redis {self.where}: {text}") from None
            raise PermanentError(f"redis {self.where}: XADD to {stream}: {text}") from None
        finally:
            await pipe.reset()


def _no_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}" if sep and "@" in rest else url


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [RedisOutput]


plugin_class = RedisOutput
