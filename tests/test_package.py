"""`make package` end to end: build the deb and rpm, install the deb on this (Debian) machine, start
a role exactly as its systemd unit would, verify the units, remove and purge.

There is no systemd PID 1 here, so the unit's ExecStart line is run as the airisd user with
runuser; its sandbox directives are checked by `systemd-analyze verify`, not exercised.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e_helpers import ROOT, free_port, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.services]

UNIT_DIR = Path("/usr/lib/systemd/system")


def _version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def packages() -> tuple[Path, Path]:
    for tool in ("dpkg-deb", "rpmbuild", "rpm", "systemd-analyze", "runuser"):
        require_tool(tool)
    if os.geteuid() != 0:
        if os.environ.get("AIRISD_REQUIRE_SERVICES") == "1":
            pytest.fail("the package test installs the deb: run it as root")
        pytest.skip("the package test installs the deb: needs root")
    started = time.monotonic()
    proc = _run(str(ROOT / "scripts" / "package.sh"), check=False)
    assert proc.returncode == 0, proc.stderr
    print(f"package build took {time.monotonic() - started:.1f}s")
    version = _version()
    deb, rpm = ROOT / "dist" / f"airisd_{version}_amd64.deb", ROOT / "dist" / f"airisd-{version}.x86_64.rpm"
    assert deb.is_file() and rpm.is_file()
    return deb, rpm


def test_rpm_lists_the_staged_files_and_scripts(packages: tuple[Path, Path]) -> None:
    _, rpm = packages
    files = set(_run("rpm", "-qpl", str(rpm)).stdout.split())
    for path in ("/usr/bin/airisd", "/opt/airisd/bin/airisd", "/opt/airisd/bin/python",
                 "/etc/airisd/airisd.toml",
                 *(f"/etc/airisd/roles/{r}.toml" for r in ("metrics", "log", "trace", "alert")),
                 "/usr/lib/systemd/system/airisd.service", "/usr/lib/systemd/system/airisd@.service",
                 "/var/lib/airisd", "/var/log/airisd"):
        assert path in files, path
    config = set(_run("rpm", "-qpc", str(rpm)).stdout.split())
    assert "/etc/airisd/airisd.toml" in config and "/etc/airisd/roles/metrics.toml" in config
    scripts = _run("rpm", "-qp", "--scripts", str(rpm)).stdout
    assert "preinstall scriptlet" in scripts and "useradd --system" in scripts
    assert "postinstall scriptlet" in scripts and "install -d -m 0750 -o airisd" in scripts
    assert "preuninstall scriptlet" in scripts and '"$1" -eq 0' in scripts
    assert "rm -rf" not in scripts  # rpm has no purge: erasing never deletes data


def _exec_start(unit: Path, instance: str) -> list[str]:
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))
    raise AssertionError(f"no ExecStart in {unit}")


def test_deb_installs_runs_as_the_unit_does_and_removes_keeping_data(packages: tuple[Path, Path]) -> None:
    deb, _ = packages
    _run("dpkg", "-i", str(deb))
    try:
        assert _run("getent", "passwd", "airisd").stdout.startswith("airisd:")
        assert Path("/var/lib/airisd").stat().st_uid == int(_run("id", "-u", "airisd").stdout)
        conffiles = _run("dpkg-query", "--showformat=${Conffiles}", "--show", "airisd").stdout
        assert "/etc/airisd/airisd.toml" in conffiles and "/etc/airisd/roles/alert.toml" in conffiles

        # systemd-analyze prints warnings (unknown keys, bad values) but exits 0: no output is the bar.
        verify = _run("systemd-analyze", "verify", str(UNIT_DIR / "airisd.service"),
                      str(UNIT_DIR / "airisd@metrics.service"), check=False)
        assert verify.returncode == 0 and not verify.stdout.strip() and not verify.stderr.strip(), verify

        port = free_port()
        cmd = _exec_start(UNIT_DIR / "airisd@.service", "metrics")
        assert cmd[:2] == ["/usr/bin/airisd", "run"] and "/etc/airisd/roles/metrics.toml" in cmd
        # As systemd starts it: the daemon itself is the process that gets SIGTERM (a runuser in
        # between forwards it but SIGKILLs the daemon 2 s later, shorter than the unit's TimeoutStopSec).
        proc = subprocess.Popen([*cmd, "--set", f'listeners.metrics.address="127.0.0.1:{port}"'],
                                user="airisd", group="airisd", extra_groups=[], cwd="/var/lib/airisd",
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    resp = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the installed daemon never answered /health"
                    time.sleep(0.1)
            assert resp.status_code == 200 and resp.json()["data"]["role"] == "metrics"
        finally:
            proc.terminate()
            out = proc.communicate(timeout=30)[0].decode()  # the unit's TimeoutStopSec
        assert proc.returncode == 0 and "airisd stopped" in out, out
        owners = {p.name: p.stat().st_uid for p in Path("/var/lib/airisd").iterdir()}
        assert "auth.db" in owners and set(owners.values()) == {Path("/var/lib/airisd").stat().st_uid}
        assert oct(Path("/var/lib/airisd/jwt.secret").stat().st_mode & 0o777) == "0o600"

        _run("dpkg", "-r", "airisd")
        assert not Path("/usr/bin/airisd").exists() and not Path("/opt/airisd").exists()
        assert Path("/var/lib/airisd/auth.db").is_file(), "dpkg -r must keep the data"
        assert Path("/etc/airisd/airisd.toml").is_file(), "dpkg -r keeps conffiles"
    finally:
        _run("dpkg", "--purge", "airisd", check=False)
    assert not Path("/var/lib/airisd").exists(), "purge deletes the data"
    assert _run("getent", "passwd", "airisd", check=False).returncode != 0
