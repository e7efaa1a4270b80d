"""``airisd backup`` and ``airisd restore``: an online snapshot of a data directory, and its return.

What a backup holds: every SQLite database in the data directory (the metrics, log and trace stores,
``alerts.db`` with rules, channels and alert history, ``auth.db`` with users and API keys), copied
with SQLite's online backup API, so it is consistent while the daemon writes (each database is
copied in one step under a read transaction; WAL lets the writers go on); every other regular file
(``jwt.secret``, buffers) copied as is; and ``manifest.json`` with each file's size, mode and
SHA-256. Files are written 0600 in a 0700 directory: the backup holds secrets.

Restore verifies every checksum before it touches anything, refuses a directory that a running
daemon holds (each ``airisd run`` keeps a shared ``flock`` on ``<data_dir>/airisd.lock``; restore
needs it exclusively) and, unless ``--force``, a directory that already has data. Each file is
written under a temporary name and renamed; a database's stale ``-wal``/``-shm`` files are removed
first, so SQLite cannot replay an old log onto the restored file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airisd import __version__
from airisd.errors import ConfigError
from airisd.timeparse import format_ts, now_ns

MANIFEST = "manifest.json"
LOCK_FILE = "airisd.lock"
FORMAT = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
SIDECARS = ("-wal", "-shm", "-journal")
SKIP = {LOCK_FILE, MANIFEST}

Progress = Callable[[int, int, str], None]  # (done bytes, total bytes, current file)


class BackupError(ConfigError):
    """A backup or restore that cannot proceed; the message says why and what to do."""


# -- the data directory lock -------------------------------------------------------------------


@contextlib.contextmanager
def hold_data_dir(data_dir: Path, *, exclusive: bool = False) -> Iterator[None]:
    """Shared: a running daemon (several roles may share one directory). Exclusive: restore."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # created by root (a restore): flock works on a read-only descriptor too
        try:
            fd = os.open(path, os.O_RDONLY)
        except PermissionError:
            raise BackupError(f"cannot open {path}: permission denied (chown -R airisd:airisd {data_dir})") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            what = "a running airisd uses" if exclusive else "a restore is writing"
            raise BackupError(f"{what} {data_dir} (stop it first: systemctl stop 'airisd*')") from None
        yield
    finally:
        os.close(fd)


# -- helpers -----------------------------------------------------------------------------------


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _files(data_dir: Path) -> list[Path]:
    out = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if not path.is_file() or path.is_symlink() or rel.as_posix() in SKIP:
            continue
        if path.name.endswith(SIDECARS):
            continue  # folded into the database by the backup API
        out.append(path)
    return out


@dataclass
class TtyProgress:
    """A one-line progress bar on a terminal; silent otherwise (cron, systemd, pipes)."""

    stream: IO[str]
    width: int = 30

    def __call__(self, done: int, total: int, name: str) -> None:
        if not self.stream.isatty():
            return
        frac = done / total if total else 1.0
        bar = "#" * int(frac * self.width)
        self.stream.write(f"\r[{bar:<{self.width}}] {frac * 100:5.1f}% {name[:40]:<40}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _copy_sqlite(src: Path, dst: Path) -> None:
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target, pages=-1)  # one step: a consistent snapshot even with writers
        target.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    finally:
        target.close()
        source.close()


# -- backup ------------------------------------------------------------------------------------


def backup(data_dir: Path, dest: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Snapshot data_dir into dest (created; must be empty); returns the manifest."""
    data_dir, dest = Path(data_dir), Path(dest)
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir}: no such data directory")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest}: not empty; back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    files = _files(data_dir)
    total = sum(p.stat().st_size for p in files) or 1
    done = 0
    entries = []
    for src in files:
        rel = src.relative_to(data_dir).as_posix()
        if progress:
            progress(done, total, rel)
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = src.stat().st_mode & 0o777
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        kind = "sqlite" if is_sqlite(src) else "file"
        if kind == "sqlite":
            _copy_sqlite(src, dst)
        else:
            dst.write_bytes(src.read_bytes())
        os.chmod(dst, 0o600)
        entries.append({"path": rel, "kind": kind, "size": dst.stat().st_size, "mode": oct(mode),
                        "sha256": sha256(dst)})
        done += src.stat().st_size
    manifest = {"format": FORMAT, "airisd_version": __version__, "created": format_ts(now_ns()),
                "source": str(data_dir.resolve()), "files": entries}
    path = dest / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(path, 0o600)
    if progress:
        progress(total, total, "done")
    return manifest


# -- restore -----------------------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(src) / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src}: no {MANIFEST}; not an airisd backup") from None
    except ValueError as exc:
        raise BackupError(f"{src}/{MANIFEST}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{src}/{MANIFEST}: unknown backup format")
    return manifest


def _is_mode(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return 0 <= int(text, 8) <= 0o777
    except ValueError:
        return False


def verify(src: Path, manifest: dict[str, Any]) -> None:
    """Every file present, inside the backup, and with its recorded checksum."""
    bad = []
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int) \
                or not _is_mode(entry.get("mode", "0o600")):
            bad.append(f"{entry!r:.80}: not a manifest entry (path, size, mode, sha256)")
            continue
        rel = entry["path"]
        path = Path(src) / rel
        if not rel or rel.startswith("/") or ".." in Path(rel).parts or rel == MANIFEST:
            bad.append(f"{rel!r}: path outside the backup")
        elif not path.is_file():
            bad.append(f"{rel}: missing")
        elif sha256(path) != entry.get("sha256"):
            bad.append(f"{rel}: checksum mismatch")
    if bad:
        raise BackupError(f"{src}: backup is damaged, nothing restored: " + "; ".join(bad))


def restore(src: Path, data_dir: Path, *, force: bool = False,
            progress: Progress | None = None) -> dict[str, Any]:
    """Verify the backup in src, then write it into data_dir (no daemon may be running on it)."""
    src, data_dir = Path(src), Path(data_dir)
    manifest = read_manifest(src)
    verify(src, manifest)
    with hold_data_dir(data_dir, exclusive=True):
        existing = _files(data_dir)
        if existing and not force:
            raise BackupError(f"{data_dir}: already holds data ({existing[0].name}, ...); "
                              "restore into an empty directory or pass --force to overwrite")
        total = sum(int(e["size"]) for e in manifest["files"]) or 1
        done = 0
        for entry in manifest["files"]:
            rel = entry["path"]
            if progress:
                progress(done, total, rel)
            dst = data_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            for suffix in SIDECARS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{dst}{suffix}")
            tmp = dst.with_name(f".{dst.name}.restore")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write((src / rel).read_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, int(str(entry.get("mode", "0o600")), 8) & 0o777)
            os.replace(tmp, dst)
            done += int(entry["size"])
        if progress:
            progress(total, total, "done")
    return manifest


# -- command line ------------------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> int:
    manifest = backup(Path(args.data_dir), Path(args.to), progress=TtyProgress(sys.stderr))
    size = sum(e["size"] for e in manifest["files"])
    print(f"backed up {len(manifest['files'])} files ({size} bytes) from {args.data_dir} to {args.to}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    manifest = restore(Path(args.source), Path(args.data_dir), force=args.force,
                       progress=TtyProgress(sys.stderr))
    print(f"restored {len(manifest['files'])} files (backup of {manifest['created']}) into {args.data_dir}")
    return 0


def register(sub: Any) -> None:
    """Add ``airisd backup`` and ``airisd restore`` to the CLI's subcommands."""
    b = sub.add_parser("backup", help="online snapshot of a data directory (stores, alert config, secrets)",
                       description="Copy every store with SQLite's online backup API (safe while airisd "
                       "runs), the secrets and a manifest with checksums into a new directory.")
    b.add_argument("--data-dir", dest="data_dir", required=True, metavar="DIR")
    b.add_argument("--to", required=True, metavar="DEST", help="a new (or empty) directory")
    b.set_defaults(fn=cmd_backup)
    r = sub.add_parser("restore", help="restore a backup into a data directory (airisd must be stopped)",
                       description="Verify the backup's checksums, then write it into the data directory. "
                       "Refuses a directory a running airisd holds.")
    r.add_argument("--from", dest="source", required=True, metavar="DEST")
    r.add_argument("--data-dir", dest="data_dir", required=True, metavar="DIR")
    r.add_argument("--force", action="store_true", help="overwrite a data directory that already holds data")
    r.set_defaults(fn=cmd_restore)
