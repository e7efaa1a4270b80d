"""The operations scripts against real daemons: health-check.sh answers 0 for a live daemon and
non-zero for a stopped one; start-all / backup / restore / stop-all run four role processes
sharing one data directory, as on a host without systemd."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e_helpers import ADMIN_PASSWORD, ROLES, ROOT, AirisProcess, airisd_bin, free_port

pytestmark = pytest.mark.e2e
SCRIPTS = ROOT / "scripts"


def _script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def _urls(ports: dict[str, int]) -> dict[str, str]:
    return {f"AIRISD_{r.upper()}_URL": f"http://127.0.0.1:{p}" for r, p in ports.items()}


def test_scripts_are_valid_bash() -> None:
    for path in SCRIPTS.glob("*.sh"):
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, path


def test_health_check_is_zero_when_all_answer_and_non_zero_when_one_is_down(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="all").start()
    try:
        env = _urls(airis.ports)
        up = _script("health-check.sh", env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.count("OK ") == 4 and "all 4 roles healthy" in up.stdout
    finally:
        airis.stop()
    down = _script("health-check.sh", env)
    assert down.returncode == 1 and "4 of 4 roles down" in down.stdout


@pytest.mark.slow
def test_start_backup_restore_stop_four_role_processes(tmp_path: Path) -> None:
    ports = {r: free_port() for r in ROLES}
    data = tmp_path / "data"
    env = {**_urls(ports), "AIRISD": airisd_bin(), "AIRISD_NO_SYSTEMD": "1",
           "AIRISD_CONFIG": str(ROOT / "etc" / "airisd.toml"), "AIRISD_DATA_DIR": str(data),
           "AIRISD_LOG_DIR": str(tmp_path / "log"), "AIRISD_BACKUP_ROOT": str(tmp_path / "backup"),
           "AIRISD_ADMIN_PASSWORD": ADMIN_PASSWORD, "API_RATE_LIMIT": "1000000",
           "AIRISD_SYSLOG_ADDRESS": f"127.0.0.1:{free_port()}",
           **{f"AIRISD_{r.upper()}_ADDRESS": f"127.0.0.1:{p}" for r, p in ports.items()}}
    env.pop("JWT_SECRET", None)
    try:
        started = _script("start-all.sh", env)
        assert started.returncode == 0, started.stdout + started.stderr
        pids = [int((data / f"airisd-{r}.pid").read_text()) for r in ROLES]
        assert len(set(pids)) == 4
        token = httpx.post(f"http://127.0.0.1:{ports['log']}/auth/login",
                           json={"username": "admin", "password": ADMIN_PASSWORD}).json()["data"]["token"]
        resp = httpx.post(f"http://127.0.0.1:{ports['metrics']}/metrics", json={"name": "ops.x", "value": 1},
                          headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 201, resp.text

        saved = _script("backup.sh", env, str(tmp_path / "backup" / "airisd-1"))
        assert saved.returncode == 0, saved.stdout + saved.stderr
        manifest = json.loads((tmp_path / "backup" / "airisd-1" / "manifest.json").read_text())
        assert "metrics.db" in {e["path"] for e in manifest["files"]}

        restored = _script("restore.sh", env, "1")  # a date: $AIRISD_BACKUP_ROOT/airisd-1
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "all 4 roles healthy" in restored.stdout
    finally:
        stopped = _script("stop-all.sh", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not list(data.glob("*.pid"))
    assert _script("health-check.sh", env).returncode == 1
