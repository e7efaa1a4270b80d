"""The service's behaviour tests (tests/test_alert_service.py: CRUD, secrets, silences, history
pages) re-run over the Redis store against a real redis-server."""

from __future__ import annotations

import pytest

import tests.test_alert_service as _service_tests
from tests.test_alert_redis_store import over_redis, redis_base_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anyio, pytest.mark.services, pytest.mark.usefixtures("over_redis")]

rig = _service_tests.rig
for _name, _obj in vars(_service_tests).items():
    if _name.startswith("test_") and callable(_obj):
        globals()[_name] = _obj
