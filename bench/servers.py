"""How to start airisd and VictoriaMetrics for a run, and how to count what each really stored."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from procs import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
AIRISD = Path(sys.executable).parent / "airisd"


def airisd_server(data_dir: Path, *, port: int | None = None, extra: list[str] | None = None) -> Server:
    """``airisd run --role metrics`` on a loopback port. Authentication stays on (every request
    carries a bearer token, as in production); the per-client rate limit is off, or it would be the
    figure; retention is off (the cached query store may be old)."""
    port = port or free_port()
    password = "bench-" + secrets.token_hex(8)
    cmd = [str(AIRISD), "run", "--config", str(ROOT / "etc" / "airisd.toml"), "--role", "metrics",
           "--data-dir", str(data_dir), "--set", f'listeners.metrics.address="127.0.0.1:{port}"',
           "--set", "outputs.sqlite.retention_days=0", "--set", "auth.rate_limit_per_minute=0",
           *(extra or [])]
    return Server("airisd", cmd, f"http://127.0.0.1:{port}/health", data_dir.parent / f"{data_dir.name}.log",
                  env={"AIRISD_ADMIN_PASSWORD": password}, base_url=f"http://127.0.0.1:{port}",
                  password=password)


def airisd_token(server: Server) -> str | None:
    """A bearer token when the build has /auth/login, None when it has no authentication yet."""
    r = httpx.post(f"{server.base_url}/auth/login", json={"username": "admin", "password": server.password},
                   timeout=5)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body = r.json()
    data = body.get("data", body)
    token = data.get("token") or data.get("access_token")
    if not token:
        raise RuntimeError(f"/auth/login answered without a token: {body}")
    return str(token)


def airisd_stored_points(data_dir: Path) -> int:
    """Rows in metrics.db, read after the daemon stopped (SIGTERM drains the queue first)."""
    conn = sqlite3.connect(f"file:{data_dir / 'metrics.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM points").fetchone()[0])
    finally:
        conn.close()


def vm_server(data_dir: Path, *, port: int | None = None) -> Server:
    port = port or free_port()
    cmd = ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data_dir}",
           "-loggerLevel=ERROR"]
    return Server("victoria-metrics", cmd, f"http://127.0.0.1:{port}/health",
                  data_dir.parent / f"{data_dir.name}.log", base_url=f"http://127.0.0.1:{port}")


def vm_stored_points(server: Server, metric: str = "bench_metric", *, timeout_secs: float = 15.0) -> int:
    """Samples VictoriaMetrics answers for ``metric`` over the last day, once the count is stable.

    VM acknowledges a write before the samples are searchable (it buffers ~1 s in memory), so flush
    and poll until two reads a second apart agree."""
    base = server.base_url
    httpx.get(f"{base}/internal/force_flush", timeout=10)
    deadline = time.monotonic() + timeout_secs
    last = -1
    while True:
        params = {"query": f"sum(count_over_time({metric}[1d]))", "nocache": "1"}
        r = httpx.get(f"{base}/api/v1/query", params=params, timeout=30)
        r.raise_for_status()
        result = r.json()["data"]["result"]
        count = int(float(result[0]["value"][1])) if result else 0
        if count == last or time.monotonic() > deadline:
            return count
        last = count
        time.sleep(1.0)


def vm_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"
