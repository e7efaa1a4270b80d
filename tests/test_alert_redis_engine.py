"""The engine's behaviour tests (tests/test_alert_engine.py) re-run with the Redis store and the
replica coordination on, against a real redis-server: same results as over SQLite."""

from __future__ import annotations

import pytest

import tests.test_alert_engine as _engine_tests
from tests.test_alert_redis_store import over_redis, redis_base_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anyio, pytest.mark.services, pytest.mark.usefixtures("over_redis")]

rig = _engine_tests.rig
am = _engine_tests.am
for _name, _obj in vars(_engine_tests).items():
    if _name.startswith("test_") and callable(_obj):
        globals()[_name] = _obj
