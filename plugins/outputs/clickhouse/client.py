"""clickhouse-connect clients for the output: one for inserts, one shared by the query threads.

Why the sync client in worker threads (anyio.to_thread) rather than the async one: the roles call
the query API synchronously from worker threads, so the reads need the sync client anyway; using
it for inserts too means one client library path, one set of error types and one connection
setup. Inserts are CPU-bound encoding plus one HTTP round trip, which a worker thread suits.

Clients have no session id (concurrent queries on one session are refused by ClickHouse) and own
their connection pool, closed with the client (no socket is left to the garbage collector). No default
database is set: it may not exist before the first migration; every statement names it.
"""

from __future__ import annotations

import threading
from typing import Any

from airisd_plugins.outputs.clickhouse.config import ClickHouseConfig
from airisd_plugins.outputs.clickhouse.writer import classify


def connect(cfg: ClickHouseConfig) -> Any:
    """A connected client (it asks the server its version); raises TransientError if unreachable."""
    import clickhouse_connect  # here: loading the plugin must not load the client library

    try:
        return clickhouse_connect.get_client(
            host=cfg.host, port=cfg.port, username=cfg.username, password=cfg.password,
            secure=cfg.secure, verify=cfg.verify, compress="lz4" if cfg.compress else False,
            connect_timeout=cfg.connect_timeout_secs, send_receive_timeout=cfg.send_receive_timeout_secs,
            autogenerate_session_id=False, dedicated_pool=True, client_name="airisd",
        )
    except Exception as exc:
        raise classify(exc, f"connect to {cfg.host}:{cfg.port}") from exc


class LazyClient:
    """A client made on first use and remade after close(): the output starts even if the read
    side is never used, and a query after a restart of ClickHouse just reconnects."""

    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.cfg = cfg
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = connect(self.cfg)
                client = self._client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
