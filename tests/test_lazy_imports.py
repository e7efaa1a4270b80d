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


def test_hs256_tokens_load_neither_pyjwt_nor_cryptography() -> None:
    """PyJWT imports ``cryptography`` (~9 MB of RSS); HS* tokens are signed with hmac alone, and the
    daemon's modules (CLI, daemon, every plugin) import neither: only an RS/ES key pair loads them."""
    code = (
        "import sys\n"
        "import airisd.cli, airisd.daemon\n"
        "from airisd.registry import build_registry\n"
        "from airisd.auth.tokens import TokenService\n"
        "build_registry()\n"
        "service = TokenService(b'0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL')\n"
        "assert service.verify(service.issue('alice', 'reader')[0]).sub == 'alice'\n"
        "print(' '.join(m for m in ('jwt', 'cryptography') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"loaded for HS256 tokens: {out.stdout.strip()}"
