"""The sample configuration: the core's sections followed by each default plugin's sample.toml.

``airisd config sample`` prints it and ``etc/airisd.toml`` is this text (a test keeps them equal),
so every option is documented in exactly one place: next to the plugin that reads it.
"""

from __future__ import annotations

from importlib import resources

CORE = """\
# airisd configuration. Every option is shown with its default, commented out.
# ${VAR} and ${VAR:-default} are filled from the environment (and from ./.env if present).
# Override any key on the command line: airisd run --set agent.data_dir=/tmp/x

[agent]
  ## Which roles this process runs: metrics, log, trace, alert, a comma-separated list, or all.
  role = "${AIRISD_ROLE:-all}"
  ## Where the embedded store, secrets and buffers live.
  data_dir = "${AIRISD_DATA_DIR:-./var}"
  ## debug, info, warning or error; logfmt or json.
  # log_level = "info"
  # log_format = "logfmt"
  ## How long SIGTERM may take to flush queues before the daemon exits anyway.
  # shutdown_timeout_secs = 10.0
  ## The host name put on self-telemetry; empty: the machine's.
  # hostname = ""

## One listener per role (HOST:PORT). TLS: set tls_cert_file and tls_key_file.
[listeners.metrics]
  address = "${AIRISD_METRICS_ADDRESS:-127.0.0.1:8001}"
[listeners.log]
  address = "${AIRISD_LOG_ADDRESS:-127.0.0.1:8002}"
[listeners.trace]
  address = "${AIRISD_TRACE_ADDRESS:-127.0.0.1:8003}"
[listeners.alert]
  address = "${AIRISD_ALERT_ADDRESS:-127.0.0.1:8004}"

[http]
  ## Requests larger than this get 413 PAYLOAD_TOO_LARGE (also after decompression).
  # max_body_bytes = 10485760
  ## Longest from..to a query may span, most points a raw query returns, largest page.
  # max_query_range_secs = 31622400
  # max_result_points = 100000
  # max_page_size = 1000
  ## Retry-After sent with 429/503 when a queue is full.
  # retry_after_secs = 1
  ## CORS is off; list the browser origins allowed to call the API, e.g. ["https://grafana.example.com"].
  # cors_allow_origins = []

## Who may call the API (docs/security.md). Every route but /health and /auth/login wants
## "Authorization: Bearer <token or API key>". The JWT secret is the environment's JWT_SECRET (32+
## random bytes; the .env placeholder is refused), or, when unset, one generated into data_dir/jwt.secret.
## The first admin's password is AIRISD_ADMIN_PASSWORD, or generated and shown once on the first start.
[auth]
  ## false: no authentication at all (only behind a trusted network or proxy).
  # enabled = true
  ## HS256/384/512 sign with JWT_SECRET; RS256 or ES256 (and 384/512) with a PEM private key file.
  # jwt_algorithm = "HS256"
  # jwt_private_key_file = ""
  # jwt_public_key_file = ""
  ## Lifetime of a login token (expires_in).
  # token_ttl_secs = 3600
  ## Requests per minute per client (token subject or API key, else address); 0 turns it off.
  rate_limit_per_minute = "${API_RATE_LIMIT:-1000}"
  ## Failed logins per user name and per address before exponential lockouts, and the longest lockout.
  # login_max_failures = 5
  # login_max_lockout_secs = 900.0
  ## true: /metrics/prometheus needs no token (for a scraper on a trusted network).
  # public_prometheus = false
  ## Proxies (addresses or networks) whose X-Forwarded-For names the client, e.g. ["127.0.0.1"] behind nginx.
  # trusted_proxies = []
  ## Read-only accounts kept in this file (`airisd user add` keeps others in data_dir/auth.db);
  ## docs/security.md shows how to make a password_hash.
  # [[auth.users]]
  #   name = "grafana"
  #   role = "reader"
  #   password_hash = "$scrypt$ln=14,r=8,p=5$..."

[tracing]
  ## Trace airisd's own HTTP requests into its trace pipeline (service metrics-service, operation
  ## "POST /metrics", ...), when this process runs the trace role. A W3C traceparent header joins
  ## the caller's trace.
  self_tracing = "${ENABLE_DISTRIBUTED_TRACING:-false}"
  sampling_rate = "${JAEGER_SAMPLING_RATE:-0.1}"
  # flush_interval_secs = 1.0

## Service discovery: register each role in Consul as <role>-service (metrics-service, ...) with an
## HTTP check on its /health; deregistered on shutdown. host and port default to CONSUL_HOST and
## CONSUL_PORT from the environment (the seed's .env).
[consul]
  # enabled = false
  # scheme = "http"
  # token = ""
  ## The address Consul should check; empty: the listener's (the host name for 0.0.0.0).
  # address = ""
  # check_interval_secs = 10.0
  # deregister_critical_after_secs = 60.0

## Which output answers each role's queries (an output's name or alias); empty: the first that can.
[stores]
  # metrics = ""
  # log = ""
  # trace = ""

## The alert role (docs/alerting.md): rules, channels and silences are managed over its HTTP API;
## the channels' server defaults follow in [alerting.channel_defaults.<type>].
[alerting]
  ## How often every enabled rule is evaluated.
  # evaluation_interval_secs = 15.0
  ## Re-notify alerts still firing this often.
  # repeat_interval_secs = 14400.0
  ## One rule's query may take this long; at most this many run at once.
  # query_timeout_secs = 10.0
  # max_concurrent_queries = 16
  ## Failed sends are retried with jittered backoff (doubling from retry_initial_secs).
  # send_attempts = 5
  # retry_initial_secs = 1.0
  # retry_max_secs = 30.0
  # max_concurrent_sends = 8
  ## Alerts pushed to POST /api/v2/alerts without endsAt resolve after this.
  # resolve_timeout_secs = 300.0
  # history_retention_days = 30.0
  ## Where rules, channels, silences, alert state and history live: "sqlite" (alerts.db in data_dir)
  ## or "redis", which several alert processes share while each notification is still sent once.
  # store = "sqlite"
  ## redis[s]://[:password@]host:port/db; empty: from the seed's REDIS_HOST, REDIS_PORT, REDIS_PASSWORD.
  # redis_url = ""
  # redis_host = "${REDIS_HOST:-127.0.0.1}"
  # redis_port = "${REDIS_PORT:-6379}"
  # redis_password = "${REDIS_PASSWORD:-}"
  # redis_db = 0
  # redis_key_prefix = "airisd:alerts:"
  ## A replica that claimed a notification and died frees it after dedup_lease_secs.
  # dedup_lease_secs = 300.0
  ## This role's public URL, for links in notifications.
  # external_url = ""
  ## Empty: rules read the embedded store (--role all). Set when the metrics and log roles run in
  ## other processes: their base URLs, and an API key with the reader role
  ## (`airisd token create --role reader`) to call them with.
  metrics_url = "${ALERT_METRICS_URL:-}"
  logs_url = "${ALERT_LOGS_URL:-}"
  api_key = "${AIRISD_ALERT_API_KEY:-}"
  ## Pushed alerts (POST /api/v2/alerts) go to the channels (by name) of the first matching route,
  ## else to default_channels.
  # default_channels = []
  # [[alerting.routes]]
  #   match = { team = "db" }
  #   match_re = { service = "pay.*" }
  #   channels = ["dba-email"]
  #   group_by = ["alertname"]
  #   continue = false
"""

DEFAULT_PLUGINS: list[tuple[str, str]] = [
    ("inputs", "http_metrics"),
    ("inputs", "http_logs"),
    ("inputs", "http_traces"),
    ("inputs", "otlp_traces"),
    ("inputs", "zipkin"),
    ("inputs", "otlp_metrics"),
    ("inputs", "prometheus_remote_write"),
    ("inputs", "influx"),
    ("inputs", "prometheus"),
    ("inputs", "otlp_logs"),
    ("inputs", "elasticsearch"),
    ("inputs", "loki"),
    ("inputs", "syslog"),
    ("processors", "redact"),
    ("outputs", "sqlite"),
    ("alerting", "email"),
    ("alerting", "slack"),
    ("alerting", "webhook"),
    ("alerting", "sms"),
]
# Shown in the sample config, commented out: documented, not enabled.
OPTIONAL_PLUGINS: list[tuple[str, str]] = [
    ("processors", "labels"),
    ("processors", "filter"),
    ("processors", "sample"),
    # Fan-out to other engines (docs/backends.md); etc/examples/seed-layout.toml enables them.
    ("outputs", "file"),
    ("outputs", "clickhouse"),
    ("outputs", "elasticsearch"),
    ("outputs", "jaeger"),
    ("outputs", "redis"),
    ("outputs", "kafka"),
    ("inputs", "kafka"),
]


def plugin_sample(section: str, name: str) -> str:
    return resources.files(f"airisd_plugins.{section}.{name}").joinpath("sample.toml").read_text(encoding="utf-8")


def sample_config() -> str:
    parts = [CORE]
    for section, name in DEFAULT_PLUGINS:
        parts.append(plugin_sample(section, name).rstrip("\n") + "\n")
    for section, name in OPTIONAL_PLUGINS:
        text = plugin_sample(section, name).rstrip("\n")
        parts.append("\n".join(line if line.startswith("#") else "# " + line for line in text.split("\n")) + "\n")
    return "\n".join(parts)
