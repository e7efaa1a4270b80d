"""The ``[alerting]`` section of airisd.toml: defaults in one place, validated with key names.

[alerting]
evaluation_interval_secs = 15
repeat_interval_secs = 14400
[alerting.channel_defaults.email]      # under every email channel's own config
host = "${SMTP_HOST:-localhost}"
store = "redis"                        # rules, state and history in Redis, shared by replicas
redis_url = "${REDIS_URL:-redis://127.0.0.1:6379/0}"   # or redis_host/port/password/db
[[alerting.routes]]                    # for alerts pushed to POST /api/v2/alerts
match = { team = "db" }
channels = ["email"]
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from airisd.errors import ConfigError

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class RouteConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Routes alerts pushed to ``/api/v2/alerts`` to channels; the first match wins unless it
    says ``continue = true``. A route with no matchers matches everything."""

    channels: list[str]
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}  # label -> regular expression (whole value)
    group_by: list[str] = msgspec.field(default_factory=lambda: ["alertname"])
    continue_: bool = msgspec.field(default=False, name="continue")

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k, "") != v for k, v in self.match.items()):
            return False
        return all(re.fullmatch(p, labels.get(k, "")) for k, p in self.match_re.items())


class AlertingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    evaluation_interval_secs: float = 15.0
    query_timeout_secs: float = 10.0  # one rule's query; a timeout is an evaluation error
    max_concurrent_queries: int = 16
    repeat_interval_secs: float = 4 * 3600.0  # re-notify alerts still firing this often
    send_attempts: int = 5  # per notification and channel, then recorded as failed
    retry_initial_secs: float = 1.0  # backoff: full jitter, doubling up to retry_max_secs
    retry_max_secs: float = 30.0
    max_concurrent_sends: int = 8
    resolve_timeout_secs: float = 300.0  # pushed alerts without endsAt resolve after this
    history_retention_days: float = 30.0
    external_url: str = ""  # this role's public URL, for links in notifications
    metrics_url: str = ""  # the metrics role's URL when it runs in another process
    logs_url: str = ""  # the log role's URL when it runs in another process
    api_key: str = ""  # bearer API key (scope read) for metrics_url / logs_url (AIRISD_ALERT_API_KEY)
    channel_defaults: dict[str, dict[str, Any]] = {}  # channel type -> config under each channel
    routes: list[RouteConfig] = []
    default_channels: list[str] = []  # for pushed alerts no route matches
    store: str = "sqlite"  # sqlite: alerts.db in the data directory; redis: shared by replicas
    redis_url: str = ""  # redis[s]://[:password@]host:port/db; empty: from the four below
    redis_host: str = "127.0.0.1"  # the seed's REDIS_HOST, REDIS_PORT, REDIS_PASSWORD
    redis_port: int = 6379
    redis_password: str = ""
    redis_db: int = 0
    redis_key_prefix: str = "airisd:alerts:"  # replicas sharing alerts use the same prefix
    redis_timeout_secs: float = 2.0  # store calls are short and synchronous (as SQLite's): fail fast
    dedup_lease_secs: float = 300.0  # a notification's claim while it is being sent (a crash frees it then)
    dedup_ttl_secs: float = 86400.0  # how long a sent notification's claim is remembered

    def validate(self, *, source: str = "<config>") -> None:
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: alerting.{key}: {problem}")

        for key in (
            "evaluation_interval_secs",
            "query_timeout_secs",
            "repeat_interval_secs",
            "retry_initial_secs",
            "retry_max_secs",
            "resolve_timeout_secs",
            "history_retention_days",
            "redis_timeout_secs",
            "dedup_lease_secs",
            "dedup_ttl_secs",
        ):
            if not getattr(self, key) > 0:
                raise bad(key, f"must be positive, got {getattr(self, key)!r}")
        for key in ("max_concurrent_queries", "max_concurrent_sends", "send_attempts"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be at least 1, got {getattr(self, key)!r}")
        if self.store not in ("sqlite", "redis"):
            raise bad("store", f"must be sqlite or redis, got {self.store!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            shown = _no_password(self.redis_url)
            raise bad("redis_url", f"must start with redis://, rediss:// or unix://, got {shown!r}")
        if not 0 < self.redis_port < 65536:
            raise bad("redis_port", f"must be a TCP port, got {self.redis_port!r}")
        if self.store == "redis" and not self.redis_key_prefix:
            raise bad("redis_key_prefix", "must not be empty")
        sending = self.send_attempts * self.retry_max_secs
        if self.store == "redis" and self.dedup_lease_secs < sending:
            raise bad(
                "dedup_lease_secs",
                f"must cover a send's retries (send_attempts x retry_max_secs = {sending:g}), "
                f"got {self.dedup_lease_secs!r}",
            )
        for i, route in enumerate(self.routes):
            for label, pattern in route.match_re.items():
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise bad(f"routes[{i}].match_re.{label}", f"bad regular expression: {exc}") from None
            for label in [*route.match, *route.match_re, *route.group_by]:
                if not _LABEL.fullmatch(label):
                    raise bad(f"routes[{i}]", f"{label!r} is not a label name")


def _no_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}" if sep and "@" in rest else url


def alerting_config(section: dict[str, Any] | None, *, source: str = "<config>") -> AlertingConfig:
    """Build the config from the TOML section (values from ``--set`` may be strings)."""
    try:
        config = msgspec.convert(section or {}, AlertingConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: [alerting]: {exc}") from None
    config.validate(source=source)
    return config
