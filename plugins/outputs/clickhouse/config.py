"""The clickhouse output's options. Defaults live here and nowhere else; sample.toml shows them."""

from __future__ import annotations

import re

from airisd.pipeline import OutputConfig

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseConfig(OutputConfig):
    ## Server address (its HTTP interface) and account; sample.toml reads the seed's .env names.
    host: str = "127.0.0.1"
    port: int = 8123
    username: str = "default"
    password: str = ""
    ## Database for the metrics, logs and spans tables; created on start if missing.
    database: str = "airis"
    ## HTTPS instead of HTTP (port 8443 on most servers); verify the server certificate.
    secure: bool = False
    verify: bool = True
    ## lz4-compress inserts (and ask for compressed results): less network, some CPU.
    compress: bool = True
    ## Rows older than this many days are dropped by ClickHouse itself (TTL on `date`); 0 keeps all.
    retention_days: int = 30
    connect_timeout_secs: float = 5.0
    send_receive_timeout_secs: float = 60.0
    ## A forwarder batches: up to batch_size rows per INSERT, or what flush_interval_secs gathered.
    batch_size: int = 10_000
    flush_interval_secs: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not self.host:
            raise ValueError(f"host must not be empty, got {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port!r}")
        if not IDENT_RE.match(self.database):
            raise ValueError(f"database must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*), got {self.database!r}")
        if self.retention_days < 0:
            raise ValueError(f"retention_days must be >= 0, got {self.retention_days!r}")
        if self.connect_timeout_secs <= 0:
            raise ValueError(f"connect_timeout_secs must be positive, got {self.connect_timeout_secs!r}")
        if self.send_receive_timeout_secs <= 0:
            raise ValueError(f"send_receive_timeout_secs must be positive, got {self.send_receive_timeout_secs!r}")
