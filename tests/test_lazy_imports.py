"""Loading every plugin must not load the backends' client libraries: a daemon that runs on the
embedded store should not pay their memory (idle RSS is one of issue 2's figures). Each backend
output imports its client in start()."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("clickhouse_connect", "elasticsearch", "redis", "aiokafka", "aiohttp", "chdb")


def test_the_registry_loads_no_backend_client() -> None:
    code = (
        "import sys\n"
        "from airisd.registry import build_registry\n"
        "r = build_registry()\n"
        "assert not r.broken, r.broken\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"loaded at registry time: {out.stdout.strip()}"
