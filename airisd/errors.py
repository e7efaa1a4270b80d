"""The daemon's exception classes. Hierarchy:

    AirisError                      base; carries an HTTP status, an error code and details
    ├── ApiError                    a request the client must change (4xx)
    │   ├── ValidationError         400 VALIDATION_ERROR: a field is wrong; details name it
    │   ├── NotFound                404 NOT_FOUND
    │   ├── Unauthorized            401 UNAUTHORIZED
    │   ├── Forbidden               403 FORBIDDEN
    │   ├── PayloadTooLarge         413 PAYLOAD_TOO_LARGE
    │   ├── UnsupportedMediaType    415 UNSUPPORTED_MEDIA_TYPE
    │   └── RateLimited             429 RATE_LIMITED (Retry-After)
    ├── Backpressure                503 BACKPRESSURE: a queue or buffer is full (Retry-After)
    ├── ConfigError                 the configuration is invalid; names the file and the key
    └── PluginError                 a plugin failed
        ├── TransientError          retry with backoff (timeouts, 5xx, connection refused)
        └── PermanentError          never retry (bad data, mapping conflict, auth)
"""

from __future__ import annotations

from typing import Any


class AirisError(Exception):
    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ApiError(AirisError):
    status = 400
    code = "BAD_REQUEST"


class ValidationError(ApiError):
    status = 400
    code = "VALIDATION_ERROR"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(ApiError):
    status = 403
    code = "FORBIDDEN"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(ApiError):
    status = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_secs: int = 1, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_secs = retry_after_secs


class Backpressure(AirisError):
    status = 503
    code = "BACKPRESSURE"

    def __init__(self, message: str, *, retry_after_secs: int = 1, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_secs = retry_after_secs


class ConfigError(AirisError):
    code = "CONFIG_ERROR"


class PluginError(AirisError):
    code = "PLUGIN_ERROR"


class TransientError(PluginError):
    """A failure worth retrying: the same call may succeed later. ``retry_after_secs`` is how long
    the backend asked to be left alone (its Retry-After; 0 when it did not say): the output runner
    waits at least that long, up to its ``retry_max_secs``, before the next try."""

    def __init__(self, message: str, *, retry_after_secs: float = 0.0, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_secs = retry_after_secs


class PermanentError(PluginError):
    """A failure that retrying cannot fix: the data or the configuration is wrong."""
