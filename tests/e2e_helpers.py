"""Start ``airisd run`` as a real subprocess on free loopback ports and talk to it over sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("metrics", "log", "trace", "alert")
# The first admin's password in every test daemon (AIRISD_ADMIN_PASSWORD); JWT_SECRET is unset, so
# each data directory generates its own. The rate limit is high so that busy tests are not refused.
ADMIN_PASSWORD = "e2e-admin-password-1"
TEST_ENV = {"AIRISD_ADMIN_PASSWORD": ADMIN_PASSWORD, "API_RATE_LIMIT": "1000000"}


def free_port(*, udp: bool = False) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airisd_bin() -> str:
    exe = Path(sys.executable).parent / "airisd"
    return str(exe) if exe.exists() else shutil.which("airisd") or "airisd"


@dataclass
class AirisProcess:
    data_dir: Path
    role: str = "all"
    config: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    clients: list[httpx.Client] = field(default_factory=list)
    token: str = ""

    def url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}"

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> AirisProcess:
        if not self.ports:
            self.ports = {r: free_port() for r in ROLES}
        args = [airisd_bin(), "run", "--config", str(self.config or ROOT / "etc" / "airisd.toml"),
                "--role", self.role, "--data-dir", str(self.data_dir)]
        for r, p in self.ports.items():
            args += ["--set", f'listeners.{r}.address="127.0.0.1:{p}"']
        args += self.extra_args
        env = {**os.environ, **TEST_ENV, **self.env}
        # The default config's syslog input binds its own port: a fixed one would stop a second daemon.
        env.setdefault("AIRISD_SYSLOG_ADDRESS", f"127.0.0.1:{free_port()}")
        if "JWT_SECRET" not in self.env:
            env.pop("JWT_SECRET", None)
        self.log_path = self.data_dir.parent / f"airisd-{self.data_dir.name}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.data_dir.parent)
        if wait:
            self.wait_healthy(timeout=timeout)
        return self

    def client(self, role: str, **kw: object) -> httpx.Client:
        """An HTTP client for a role's listener, with whatever credentials the daemon wants."""
        client = httpx.Client(base_url=self.url(role), headers=self.auth_headers(), timeout=30, **kw)  # type: ignore[arg-type]
        self.clients.append(client)  # closed by stop()
        return client

    def auth_headers(self) -> dict[str, str]:
        """The admin's bearer token, from one POST /auth/login on any role."""
        if not self.token:
            self.token = self.login("admin", ADMIN_PASSWORD)
        return {"Authorization": f"Bearer {self.token}"}

    def login(self, username: str, password: str) -> str:
        resp = httpx.post(self.url(self.roles()[0]) + "/auth/login",
                          json={"username": username, "password": password}, timeout=30)
        if resp.status_code != 200:
            raise AssertionError(f"login as {username} failed: {resp.status_code} {resp.text}")
        return str(resp.json()["data"]["token"])

    def roles(self) -> list[str]:
        return list(ROLES) if self.role == "all" else self.role.split(",")

    def wait_healthy(self, *, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.roles())
        while pending:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"airisd exited with {self.proc.returncode}:\n{self.log()}")
            for role in list(pending):
                try:
                    if httpx.get(self.url(role) + "/health", timeout=1).status_code == 200:
                        pending.discard(role)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"airisd not healthy in {timeout}s (waiting for {pending}):\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, *, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return int(self.proc.returncode)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate()


def require_tool(name: str) -> str:
    """A tool the test needs: under CI (AIRISD_REQUIRE_SERVICES=1) its absence fails the test."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("AIRISD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{name} is not installed; run scripts/test-services.sh install")
        pytest.skip(f"{name} not installed (scripts/test-services.sh install)")
    return path
