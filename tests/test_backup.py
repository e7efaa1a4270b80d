"""`airisd backup` / `airisd restore`: an online snapshot taken while the daemon ingests, restored
into a fresh directory and queried there; damaged backups and running daemons are refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airisd.backup import BackupError, backup, hold_data_dir, read_manifest, restore
from airisd.timeparse import format_ts, now_ns
from tests.e2e_helpers import AirisProcess, airisd_bin


def _make_data_dir(path: Path, rows: int = 100) -> Path:
    path.mkdir()
    db = sqlite3.connect(path / "metrics.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(rows)])
    db.commit()
    db.close()
    (path / "jwt.secret").write_text("s" * 64)
    os.chmod(path / "jwt.secret", 0o600)
    return path


def test_backup_and_restore_round_trip_with_checksums_and_modes(tmp_path: Path) -> None:
    data = _make_data_dir(tmp_path / "data")
    manifest = backup(data, tmp_path / "bk")
    assert {e["path"]: e["kind"] for e in manifest["files"]} == {"jwt.secret": "file", "metrics.db": "sqlite"}
    assert oct((tmp_path / "bk").stat().st_mode & 0o777) == "0o700"
    modes = {oct((tmp_path / "bk" / e["path"]).stat().st_mode & 0o777) for e in manifest["files"]}
    assert modes == {"0o600"}
    assert read_manifest(tmp_path / "bk")["files"] == manifest["files"]
    restore(tmp_path / "bk", tmp_path / "fresh")
    db = sqlite3.connect(tmp_path / "fresh" / "metrics.db")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert (tmp_path / "fresh" / "jwt.secret").read_text() == "s" * 64
    assert oct((tmp_path / "fresh" / "jwt.secret").stat().st_mode & 0o777) == "0o600"


def test_a_damaged_backup_restores_nothing(tmp_path: Path) -> None:
    data = _make_data_dir(tmp_path / "data")
    backup(data, tmp_path / "bk")
    raw = bytearray((tmp_path / "bk" / "metrics.db").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "bk" / "metrics.db").write_bytes(bytes(raw))
    with pytest.raises(BackupError, match=r"metrics\.db: checksum mismatch"):
        restore(tmp_path / "bk", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "bk" / "jwt.secret").unlink()
    with pytest.raises(BackupError, match=r"jwt\.secret: missing"):
        restore(tmp_path / "bk", tmp_path / "fresh")
    with pytest.raises(BackupError, match="not an airisd backup"):
        restore(tmp_path / "data", tmp_path / "fresh")


def test_restore_refuses_a_held_or_non_empty_directory(tmp_path: Path) -> None:
    data = _make_data_dir(tmp_path / "data")
    backup(data, tmp_path / "bk")
    with pytest.raises(BackupError, match="already holds data"):
        restore(tmp_path / "bk", data)
    with hold_data_dir(data), pytest.raises(BackupError, match="running airisd"):
        restore(tmp_path / "bk", data, force=True)
    restore(tmp_path / "bk", data, force=True)
    with pytest.raises(BackupError, match="not empty"):
        backup(data, tmp_path / "bk")


def test_backup_is_consistent_while_another_connection_writes(tmp_path: Path) -> None:
    data = _make_data_dir(tmp_path / "data", rows=0)
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(data / "metrics.db", timeout=30)
        i = 0
        while not stop.is_set():
            db.executemany("INSERT INTO t VALUES (?, ?)", [(i + k, "x" * 100) for k in range(100)])
            db.commit()  # always whole batches of 100
            i += 100
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for n in range(5):
            backup(data, tmp_path / f"bk{n}")
    finally:
        stop.set()
        thread.join()
    for n in range(5):
        db = sqlite3.connect(tmp_path / f"bk{n}" / "metrics.db")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] % 100 == 0


@pytest.fixture
def airis(tmp_path: Path) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path / "data", role="all")
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.e2e
def test_online_backup_while_ingesting_then_restore_and_query(airis: AirisProcess, tmp_path: Path) -> None:
    client = airis.client("metrics")
    base_ms = now_ns() // 1_000_000 - 1_800_000  # recent: older points would meet the store's retention
    acked: list[int] = []
    stop = threading.Event()

    def ingest() -> None:
        i = 0
        while not stop.is_set():
            batch = [{"name": "bk.load", "value": float(i + k), "timestamp": base_ms + i + k}
                     for k in range(50)]
            if client.post("/metrics/batch", json={"metrics": batch}).status_code == 201:
                acked.append(i + 50)
            i += 50

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        while len(acked) < 5:
            threading.Event().wait(0.01)
        acked_before = acked[-1]
        dest = tmp_path / "backup"
        run = subprocess.run([airisd_bin(), "backup", "--data-dir", str(airis.data_dir), "--to", str(dest)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    finally:
        stop.set()
        thread.join()
    names = {e["path"] for e in read_manifest(dest)["files"]}
    assert {"metrics.db", "logs.db", "traces.db", "alerts.db", "auth.db", "jwt.secret"} <= names
    refused = subprocess.run([airisd_bin(), "restore", "--from", str(dest), "--data-dir", str(airis.data_dir),
                              "--force"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "running airisd" in refused.stderr

    fresh = tmp_path / "restored"
    run = subprocess.run([airisd_bin(), "restore", "--from", str(dest), "--data-dir", str(fresh)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert oct((fresh / "jwt.secret").stat().st_mode & 0o777) == "0o600"
    airis.stop()
    again = AirisProcess(fresh, role="metrics")
    again.start()
    try:
        resp = again.client("metrics").get("/metrics/query", params={
            "name": "bk.load", "from": format_ts((base_ms - 1000) * 1_000_000),
            "to": format_ts((base_ms + 1_000_000) * 1_000_000)})
        assert resp.status_code == 200, resp.text
        points = resp.json()["data"]["series"][0]["points"]
        assert len(points) >= acked_before  # every point acknowledged before the backup began
        assert len(points) % 50 == 0  # whole batches only: the snapshot is consistent
    finally:
        again.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
entries = st.fixed_dictionaries({
    "path": st.text(max_size=12) | json_values, "sha256": st.text(max_size=8),
    "size": st.integers() | json_values, "mode": st.sampled_from(["0o600", "9", "x"])})
manifests = st.fixed_dictionaries({"format": st.just(1),
                                   "files": st.lists(entries | json_values, max_size=4)})


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(manifest=manifests | json_values)
def test_any_manifest_is_refused_cleanly_and_restores_nothing(tmp_path: Path, manifest: object) -> None:
    import json
    import shutil

    src = tmp_path / "bk"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    (src / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "target"
    shutil.rmtree(target, ignore_errors=True)
    try:
        restore(src, target)
    except BackupError:
        assert not target.exists()
    else:  # only an empty file list restores, and then nothing is written but the lock
        assert isinstance(manifest, dict) and manifest["files"] == []
        assert [p.name for p in target.iterdir()] == ["airisd.lock"]
