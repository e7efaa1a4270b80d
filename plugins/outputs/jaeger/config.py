"""The jaeger output's options, and where its two URLs come from.

Jaeger takes OTLP/HTTP on port 4318 (``/v1/traces``) and answers its query API on 16686. The
seed's ``.env`` names ``JAEGER_ENDPOINT=http://localhost:14268/api/traces``, which is Jaeger's
older Thrift collector: it does not take OTLP, so such an endpoint is turned into the same host's
OTLP receiver (port 4318, ``/v1/traces``) and the daemon logs the URL it uses. That keeps the
seed's ``.env`` working unchanged without sending protobuf where Thrift is expected.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import msgspec

from airisd.pipeline import OutputConfig

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
OTLP_PATH = "/v1/traces"
OTLP_HTTP_PORT = 4318
THRIFT_PATH = "/api/traces"  # Jaeger's Thrift-over-HTTP collector (port 14268)
THRIFT_PORT = 14268
QUERY_PORT = 16686
COMPRESSIONS = ("none", "gzip")


class JaegerConfig(OutputConfig):
    ## OTLP/HTTP receiver: a base URL (``/v1/traces`` is appended) or the full traces URL.
    ## Empty: $JAEGER_ENDPOINT, else http://127.0.0.1:4318.
    endpoint: str = ""
    ## "gzip" or "none": compression of the request body.
    compression: str = "none"
    ## Extra request headers (e.g. an API key for a collector behind a proxy).
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_secs: float = 10.0
    ## Jaeger's query API (what the trace role reads with ``[stores] trace = "jaeger"``).
    ## Empty: $JAEGER_QUERY_URL, else port 16686 on the endpoint's host.
    query_url: str = ""
    query_headers: dict[str, str] = msgspec.field(default_factory=dict)
    query_timeout_secs: float = 30.0
    # Spans travel in big batches: a request per 1000 spans or per second.
    batch_size: int = 1000

    def validate(self) -> None:
        super().validate()
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be 'none' or 'gzip', got {self.compression!r}")
        for name in ("timeout_secs", "query_timeout_secs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        traces_url(self.endpoint)
        query_url(self.query_url, self.endpoint)

    def traces_url(self) -> str:
        return traces_url(self.endpoint)

    def query_base_url(self) -> str:
        return query_url(self.query_url, self.endpoint)


def _split(url: str, option: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of an http(s) URL, or ValueError naming the option."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{option} is not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{option} must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{option} must not have a query or fragment, got {url!r}")
    return parts.scheme, parts.netloc, port, parts.path


def traces_url(endpoint: str) -> str:
    """The URL spans are POSTed to. See the module docstring for the Thrift collector case."""
    raw = endpoint or os.environ.get("JAEGER_ENDPOINT") or DEFAULT_ENDPOINT
    option = "endpoint" if endpoint else "endpoint (from JAEGER_ENDPOINT)"
    scheme, netloc, port, path = _split(raw, option)
    path = path.rstrip("/")
    if path == THRIFT_PATH:
        host = urlsplit(raw).hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{OTLP_HTTP_PORT}" if port in (None, THRIFT_PORT) else netloc
        path = OTLP_PATH
    elif not path.endswith(OTLP_PATH):
        path += OTLP_PATH
    return urlunsplit((scheme, netloc, path, "", ""))


def query_url(configured: str, endpoint: str) -> str:
    """The query API's base URL, without a trailing slash."""
    raw = configured or os.environ.get("JAEGER_QUERY_URL") or ""
    if raw:
        _split(raw, "query_url" if configured else "query_url (from JAEGER_QUERY_URL)")
        return raw.rstrip("/")
    scheme, _, _, _ = _split(traces_url(endpoint), "endpoint")
    host = urlsplit(traces_url(endpoint)).hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{QUERY_PORT}"


def redacted(url: str) -> str:
    """The URL without a user or password, for logs and health output."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
